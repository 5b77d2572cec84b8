//! The matrix's JetStream, KV and object store probes, connection checks, and the dispatch per operation.

use super::*;

impl<'a> Matrix<'a> {
    pub(super) async fn op_api(&mut self, role: &str, check: &Value) -> Outcome {
        let subject = check["subject"].as_str().unwrap().to_owned();
        let seq = match check["probe"].as_str() {
            Some(p) => Some(self.admin_publish(p, "probe").await),
            None => None,
        };
        let (msg, why) = self
            .request(
                role,
                &subject,
                encode_payload(&check["payload"], seq),
                headers_of(check),
            )
            .await;
        let subjects = vec![subject];
        let Some(msg) = msg else {
            return Outcome::no(why, subjects);
        };
        if let Some(err) = api_error(&msg) {
            return Outcome {
                server_error: true,
                ..Outcome::no(err, subjects)
            };
        }
        Outcome::ok("ok", subjects)
    }

    /// One pull request on a fresh inbox of `role`; a message with a `$JS.ACK` reply.
    pub(super) async fn pull_one(
        &mut self,
        role: &str,
        subject: &str,
    ) -> (Option<async_nats::Message>, String) {
        let inbox = format!("{}.{}", subject::inbox_prefix(role), self.unique("p"));
        let rc = self.conn(role).await;
        let mark = rc.violations.mark();
        let mut sub = rc.client.subscribe(inbox.clone()).await.unwrap();
        rc.barrier().await;
        rc.client
            .publish_with_reply(
                subject.to_owned(),
                inbox,
                Bytes::from(r#"{"batch":1,"expires":2000000000}"#),
            )
            .await
            .unwrap();
        rc.barrier().await;
        let subjects = vec![subject.to_owned()];
        let got = Self::first_of(&mut sub, &rc.violations, mark, &subjects, |m| {
            m.status.is_none_or(|s| s.as_u16() >= 400)
        })
        .await;
        let _ = sub.unsubscribe().await;
        match got {
            None if rc.violations.since(mark, &subjects) => (None, "permissions violation".into()),
            None => (None, "timeout".into()),
            Some(m) if m.reply.as_ref().is_some_and(|r| r.starts_with("$JS.ACK.")) => {
                (Some(m), String::new())
            }
            Some(m) => (None, api_error(&m).unwrap_or_else(|| "no message".into())),
        }
    }

    pub(super) async fn op_pull(&mut self, role: &str, check: &Value) -> Outcome {
        let subject = check["subject"].as_str().unwrap().to_owned();
        if let Some(p) = check["probe"].as_str() {
            self.admin_publish(p, "probe").await;
        }
        let (msg, why) = self.pull_one(role, &subject).await;
        let Some(msg) = msg else {
            return Outcome::no(why, vec![subject]);
        };
        let reply = msg.reply.clone().unwrap();
        let rc = self.conn(role).await;
        rc.client
            .publish(reply.clone(), "+ACK".into())
            .await
            .unwrap();
        rc.barrier().await;
        Outcome::ok(
            format!("got {}", msg.subject),
            vec![subject, reply.to_string()],
        )
    }

    pub(super) async fn ack_pending(&mut self, stream: &str, consumer: &str) -> u64 {
        let info = self
            .admin_api(
                &format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
                Value::Null,
            )
            .await;
        info["num_ack_pending"].as_u64().unwrap_or(0)
    }

    pub(super) async fn op_ack(&mut self, role: &str, check: &Value) -> Outcome {
        let parts: Vec<&str> = check["subject"].as_str().unwrap().split('.').collect();
        assert_eq!(
            parts.len(),
            4,
            "ack check needs $JS.ACK.<stream>.<consumer>"
        );
        let (stream, consumer) = (parts[2].to_owned(), parts[3].to_owned());
        if let Some(p) = check["probe"].as_str() {
            self.admin_publish(p, "probe").await;
        }
        let (m, why) = self
            .pull_one(
                "admin",
                &format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            )
            .await;
        let m = m.unwrap_or_else(|| panic!("admin could not pull from {stream}/{consumer}: {why}"));
        let reply = m.reply.clone().unwrap().to_string();
        let pending = self.ack_pending(&stream, &consumer).await;
        let rc = self.conn(role).await;
        let mark = rc.violations.mark();
        rc.client
            .publish(reply.clone(), "+ACK".into())
            .await
            .unwrap();
        rc.barrier().await;
        let used = vec![reply.clone()];
        let start = Instant::now();
        let mut acked = false;
        while start.elapsed() < T_ALLOW {
            if self.conns[role].violations.since(mark, &used) {
                break;
            }
            if self.ack_pending(&stream, &consumer).await < pending {
                acked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !acked {
            let admin = self.admin().await;
            admin.publish(reply, "+TERM".into()).await.unwrap();
            self.conn("admin").await.barrier().await;
        }
        if acked {
            Outcome::ok("acked", used)
        } else {
            Outcome::no("still pending", used)
        }
    }

    pub(super) async fn op_kv_watch(&mut self, role: &str, check: &Value) -> Outcome {
        let subject = check["subject"].as_str().unwrap().to_owned();
        let bucket = subject
            .strip_prefix("$KV.")
            .and_then(|s| s.strip_suffix(".>"))
            .expect("kv_watch needs $KV.<bucket>.>")
            .to_owned();
        let deliver = format!("{}.{}", subject::inbox_prefix(role), self.unique("w"));
        let rc = self.conn(role).await;
        let mark = rc.violations.mark();
        let client = rc.client.clone();
        let mut sub = client.subscribe(deliver.clone()).await.unwrap();
        rc.barrier().await;
        let create = format!("$JS.API.CONSUMER.CREATE.KV_{bucket}");
        let cfg = json!({"stream_name": format!("KV_{bucket}"), "config": {
            "deliver_subject": deliver, "deliver_policy": "last_per_subject", "ack_policy": "none",
            "filter_subject": subject, "flow_control": true, "idle_heartbeat": 5_000_000_000u64,
            "max_deliver": 1, "mem_storage": true, "num_replicas": 1,
            "inactive_threshold": 5_000_000_000u64, "replay_policy": "instant"}});
        let (msg, why) = self
            .request(role, &create, encode_payload(&cfg, None), None)
            .await;
        let used = vec![create, deliver];
        let err = match &msg {
            Some(m) => api_error(m),
            None => Some(why),
        };
        if let Some(err) = err {
            return Outcome::no(err, used);
        }
        let prefix = format!("$KV.{bucket}.");
        let v = self.conns[role].violations.clone();
        let got = Self::first_of(&mut sub, &v, mark, &used, |m| {
            if let Some(r) = &m.reply
                && r.starts_with("$JS.FC.")
            {
                let (c, r) = (client.clone(), r.clone());
                tokio::spawn(async move { c.publish(r, Bytes::new()).await });
                return false;
            }
            m.subject.starts_with(prefix.as_str())
        })
        .await;
        match got {
            Some(m) => Outcome::ok(format!("entry {}", m.subject), used),
            None => Outcome::no("no entry", used),
        }
    }

    pub(super) async fn op_obj_roundtrip(&mut self, role: &str, check: &Value) -> Outcome {
        let (bucket, name) = check["subject"].as_str().unwrap().split_once('/').unwrap();
        let (bucket, name) = (bucket.to_owned(), name.to_owned());
        let stream = format!("OBJ_{bucket}");
        let mut used: Vec<String> = Vec::new();
        let data = Bytes::from(format!("artifact-{}", uuid::Uuid::new_v4()).repeat(8));
        let nuid = self.unique("n");
        let steps: Vec<(String, Bytes, Option<HeaderMap>)> = {
            let meta_subject = format!("$O.{bucket}.M.{}", base64_url(name.as_bytes()));
            let meta = json!({"name": name, "bucket": bucket, "nuid": nuid, "size": data.len(), "chunks": 1});
            let mut rollup = HeaderMap::new();
            rollup.insert("Nats-Rollup", "sub");
            vec![
                (format!("$JS.API.STREAM.INFO.{stream}"), Bytes::new(), None),
                (format!("$O.{bucket}.C.{nuid}"), data.clone(), None),
                (
                    meta_subject.clone(),
                    Bytes::from(meta.to_string()),
                    Some(rollup),
                ),
                (
                    format!("$JS.API.DIRECT.GET.{stream}.{meta_subject}"),
                    Bytes::new(),
                    None,
                ),
            ]
        };
        for (subject, payload, headers) in steps {
            used.push(subject.clone());
            let (msg, why) = self.request(role, &subject, payload, headers).await;
            let Some(msg) = msg else {
                return Outcome::no(format!("{subject}: {why}"), used);
            };
            if let Some(err) = api_error(&msg) {
                return Outcome::no(format!("{subject}: {err}"), used);
            }
        }
        let deliver = format!("{}.{}", subject::inbox_prefix(role), self.unique("o"));
        let rc = self.conn(role).await;
        let mark = rc.violations.mark();
        let client = rc.client.clone();
        let mut sub = client.subscribe(deliver.clone()).await.unwrap();
        rc.barrier().await;
        let create = format!("$JS.API.CONSUMER.CREATE.{stream}");
        let cfg = json!({"stream_name": stream, "config": {
            "deliver_subject": deliver, "deliver_policy": "all", "ack_policy": "none",
            "filter_subject": format!("$O.{bucket}.C.{nuid}"), "flow_control": true,
            "idle_heartbeat": 5_000_000_000u64, "max_deliver": 1, "mem_storage": true,
            "num_replicas": 1, "inactive_threshold": 5_000_000_000u64}});
        used.push(create.clone());
        let (msg, why) = self
            .request(role, &create, encode_payload(&cfg, None), None)
            .await;
        match &msg {
            None => return Outcome::no(format!("chunk consumer: {why}"), used),
            Some(m) => {
                if let Some(err) = api_error(m) {
                    return Outcome::no(format!("chunk consumer: {err}"), used);
                }
            }
        }
        used.push(deliver);
        let chunk_prefix = format!("$O.{bucket}.C.");
        let v = self.conns[role].violations.clone();
        let got = Self::first_of(&mut sub, &v, mark, &used, |m| {
            m.subject.starts_with(chunk_prefix.as_str())
        })
        .await;
        match got {
            Some(m) if m.payload == data => Outcome::ok("round trip", used),
            _ => Outcome::no("chunk not read back", used),
        }
    }

    pub(super) async fn op_connect(&mut self, check: &Value) -> Outcome {
        let role = check["role"].as_str().unwrap();
        let password = if role == "anonymous" {
            None
        } else {
            Some(
                check["password"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| self.server.password(role)),
            )
        };
        match connect_role(&self.server.url, role, password, Tls::default()).await {
            Ok(_) => Outcome::ok("connected", vec![]),
            Err(e) => Outcome::no(format!("refused: {e}"), vec![]),
        }
    }

    pub(super) async fn op_tls_connect(&mut self, check: &Value) -> Outcome {
        let server = self.tls.expect("TLS server for tls_connect checks");
        let certs = server.certs.clone().unwrap();
        let role = check["role"].as_str().unwrap();
        let password = check["password"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| server.password(role));
        let tls = match check["cert"].as_str().unwrap_or("good") {
            "plaintext" => return plaintext_connect(server.port, role, &password),
            "good" => Tls {
                ca: Some(certs.ca()),
                pair: Some(Certs::pair(&certs.good, role)),
            },
            "foreign" => Tls {
                ca: Some(certs.ca()),
                pair: Some(Certs::pair(&certs.foreign, role)),
            },
            "none" => Tls {
                ca: Some(certs.ca()),
                pair: None,
            },
            other => panic!("unknown cert mode {other}"),
        };
        match connect_role(&server.url, role, Some(password), tls).await {
            Ok(_) => Outcome::ok("connected over mTLS", vec![]),
            Err(e) => Outcome::no(format!("refused: {e}"), vec![]),
        }
    }

    pub(super) async fn run(&mut self, check: &Value) -> Outcome {
        let op = check["op"].as_str().unwrap();
        match op {
            "connect" => return self.op_connect(check).await,
            "tls_connect" => return self.op_tls_connect(check).await,
            _ => {}
        }
        let role = check["role"].as_str().unwrap().to_owned();
        let mark = self.conn(&role).await.violations.mark();
        let mut out = match op {
            "pub" => self.op_pub(&role, check).await,
            "js_pub" => self.op_js_pub(&role, check).await,
            "sub" => self.op_sub(&role, check).await,
            "serve" => self.op_serve(&role, check).await,
            "api" => self.op_api(&role, check).await,
            "pull" => self.op_pull(&role, check).await,
            "ack" => self.op_ack(&role, check).await,
            "kv_watch" => self.op_kv_watch(&role, check).await,
            "obj_roundtrip" => self.op_obj_roundtrip(&role, check).await,
            other => panic!("unknown op {other}"),
        };
        let v = self.conns[&role].violations.clone();
        // A denial may be reported a little after the operation gave up.
        if !out.success && !v.since(mark, &out.subjects) {
            v.wait(mark, &out.subjects, Duration::from_millis(100))
                .await;
        }
        out.violation = v.since(mark, &out.subjects);
        out
    }
}
