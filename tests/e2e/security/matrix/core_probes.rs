//! The matrix's connections per role, its setup as `admin`, and the core NATS probes (publish, subscribe, request, serve).

use super::*;

impl<'a> Matrix<'a> {
    pub(super) fn unique(&mut self, prefix: &str) -> String {
        self.n += 1;
        format!(
            "{prefix}{}{}",
            self.n,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }

    pub(super) async fn conn(&mut self, role: &str) -> &RoleConn {
        if !self.conns.contains_key(role) {
            let c = connect_role(
                &self.server.url,
                role,
                Some(self.server.password(role)),
                Tls::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{role} cannot connect: {e}"));
            self.conns.insert(role.to_owned(), c);
        }
        &self.conns[role]
    }

    pub(super) async fn admin(&mut self) -> async_nats::Client {
        self.conn("admin").await.client.clone()
    }

    pub(super) async fn admin_api(&mut self, subject: &str, body: Value) -> Value {
        let admin = self.admin().await;
        let msg = admin
            .request(subject.to_owned(), encode_payload(&body, None))
            .await
            .unwrap_or_else(|e| panic!("{subject}: {e}"));
        serde_json::from_slice(&msg.payload).unwrap()
    }

    /// Publishes as admin and returns the stream sequence from the PubAck.
    pub(super) async fn admin_publish(&mut self, subject: &str, data: &str) -> u64 {
        let admin = self.admin().await;
        let msg = admin
            .request(subject.to_owned(), Bytes::from(data.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("admin publish to {subject}: {e}"));
        let ack: Value = serde_json::from_slice(&msg.payload).unwrap();
        ack["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("admin publish to {subject}: {ack}"))
    }

    /// The topology of `agentry setup` plus the seeds the checks read.
    pub(super) async fn setup(&mut self, roles: &[&str]) {
        let admin = self.admin().await;
        ensure(&jetstream::new(admin), &Topology::new(&test_settings()))
            .await
            .expect("topology");
        for (subject, data) in [
            (
                "agentry.results.acme.r1",
                r#"{"request_id":"r1","output":"acme only"}"#,
            ),
            (
                "agentry.results.globex.g1",
                r#"{"request_id":"g1","output":"globex only"}"#,
            ),
            (
                "agentry.results.r0",
                r#"{"request_id":"r0","output":"single tenant"}"#,
            ),
            (
                "$KV.agentry-agents.echo-1",
                r#"{"id":"echo-1","status":"live"}"#,
            ),
            ("$KV.agentry-tickets.t1", r#"{"ticket":1}"#),
            ("$KV.agentry-incidents.i1", r#"{"incident":1}"#),
            ("$KV.agentry-quarantine.q1", r#"{"reason":"test"}"#),
            ("$KV.agentry-runs.run-1", r#"{"schema_version":1}"#),
            ("$KV.agentry-workflows.triage.1", r#"{"name":"triage"}"#),
        ] {
            self.admin_publish(subject, data).await;
        }
        // What earlier checks of other roles leave behind: the admin deletes
        // the custom-capability consumer the agent created.
        if roles.contains(&"admin") && !roles.contains(&"agent") {
            let reply = self
                .admin_api(
                    "$JS.API.CONSUMER.CREATE.AGENTRY_TASKS.cap-custom_x.agentry.tasks.custom_x",
                    json!({"stream_name": "AGENTRY_TASKS", "config": {"durable_name": "cap-custom_x",
                           "filter_subject": "agentry.tasks.custom_x", "ack_policy": "explicit", "max_deliver": 5}}),
                )
                .await;
            assert!(reply["error"].is_null(), "{reply}");
        }
    }

    /// Request as `role`, ending early on a reported violation of `subject`.
    pub(super) async fn request(
        &mut self,
        role: &str,
        subject: &str,
        payload: Bytes,
        headers: Option<HeaderMap>,
    ) -> (Option<async_nats::Message>, String) {
        let rc = self.conn(role).await;
        let mark = rc.violations.mark();
        let mut req = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(T_ALLOW));
        if let Some(h) = headers {
            req = req.headers(h);
        }
        let subjects = vec![subject.to_owned()];
        tokio::select! {
            r = rc.client.send_request(subject.to_owned(), req) => match r {
                Ok(m) => (Some(m), String::new()),
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => (None, "no responders".into()),
                Err(e) => (None, e.to_string()),
            },
            true = rc.violations.wait(mark, &subjects, T_ALLOW) => (None, "permissions violation".into()),
        }
    }

    /// The first message on `sub` satisfying `want`, unless a violation of
    /// `subjects` is reported first.
    pub(super) async fn first_of(
        sub: &mut async_nats::Subscriber,
        v: &Violations,
        mark: usize,
        subjects: &[String],
        mut want: impl FnMut(&async_nats::Message) -> bool,
    ) -> Option<async_nats::Message> {
        let deadline = tokio::time::Instant::now() + T_ALLOW;
        loop {
            tokio::select! {
                m = tokio::time::timeout_at(deadline, sub.next()) => match m {
                    Ok(Some(m)) if want(&m) => return Some(m),
                    Ok(Some(_)) => continue,
                    _ => return None,
                },
                true = v.wait(mark, subjects, T_ALLOW) => return None,
            }
        }
    }

    pub(super) async fn op_pub(&mut self, role: &str, check: &Value) -> Outcome {
        let subject = check["subject"].as_str().unwrap().to_owned();
        let admin = self.admin().await;
        let mut seen = admin.subscribe(subject.clone()).await.unwrap();
        self.conn("admin").await.barrier().await;
        let rc = self.conn(role).await;
        let mark = rc.violations.mark();
        let marker = Bytes::from(uuid::Uuid::new_v4().to_string());
        rc.client
            .publish(subject.clone(), marker.clone())
            .await
            .unwrap();
        rc.barrier().await;
        let subjects = vec![subject];
        let got = Self::first_of(&mut seen, &rc.violations, mark, &subjects, |m| {
            m.payload == marker
        })
        .await;
        match got {
            Some(_) => Outcome::ok("delivered", subjects),
            None => Outcome::no("not delivered", subjects),
        }
    }

    pub(super) async fn op_js_pub(&mut self, role: &str, check: &Value) -> Outcome {
        let subject = check["subject"].as_str().unwrap().to_owned();
        let (msg, why) = self
            .request(
                role,
                &subject,
                encode_payload(&check["payload"], None),
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
        Outcome::ok(String::from_utf8_lossy(&msg.payload), subjects)
    }

    pub(super) async fn op_sub(&mut self, role: &str, check: &Value) -> Outcome {
        let subject = check["subject"].as_str().unwrap().to_owned();
        let probe = check["probe"].as_str().unwrap_or(&subject).to_owned();
        let prober_role = check["probe_role"].as_str().unwrap_or("admin").to_owned();
        self.conn(&prober_role).await;
        let rc = &self.conns[role];
        let mark = rc.violations.mark();
        let mut sub = rc.client.subscribe(subject.clone()).await.unwrap();
        rc.barrier().await;
        let marker = Bytes::from(uuid::Uuid::new_v4().to_string());
        let prober = &self.conns[&prober_role];
        prober.client.publish(probe, marker.clone()).await.unwrap();
        prober.barrier().await;
        let rc = &self.conns[role];
        let subjects = vec![subject];
        let got = Self::first_of(&mut sub, &rc.violations, mark, &subjects, |m| {
            m.payload == marker
        })
        .await;
        let _ = sub.unsubscribe().await;
        match got {
            Some(m) => Outcome::ok(format!("received on {}", m.subject), subjects),
            None => Outcome::no("nothing received", subjects),
        }
    }

    pub(super) async fn op_serve(&mut self, role: &str, check: &Value) -> Outcome {
        let subject = check["subject"].as_str().unwrap().to_owned();
        let probe = check["probe"].as_str().unwrap_or(&subject).to_owned();
        let prober_role = check["probe_role"].as_str().unwrap_or("admin").to_owned();
        let prober = self.conn(&prober_role).await.client.clone();
        let rc = self.conn(role).await;
        let mark = rc.violations.mark();
        let answer = Bytes::from(format!("served-by-{}", rc.role));
        let mut sub = rc.client.subscribe(subject.clone()).await.unwrap();
        rc.barrier().await;
        let replied = Arc::new(Mutex::new(Vec::<String>::new()));
        let server = {
            let client = rc.client.clone();
            let replied = replied.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    if let Some(reply) = m.reply {
                        replied.lock().unwrap().push(reply.to_string());
                        let _ = client.publish(reply, answer.clone()).await;
                        let _ = client.flush().await;
                    }
                }
            })
        };
        let res = tokio::time::timeout(T_ALLOW, prober.request(probe, "ping".into())).await;
        server.abort();
        let mut used = vec![subject];
        used.extend(replied.lock().unwrap().iter().cloned());
        rc.violations
            .wait(mark, &used, Duration::from_millis(200))
            .await;
        match res {
            Ok(Ok(m)) if m.payload == answer => Outcome::ok("answered", used),
            Ok(Ok(_)) => Outcome::no("unexpected answer", used),
            Ok(Err(e)) => Outcome::no(e.to_string(), used),
            Err(_) => Outcome::no("no answer", used),
        }
    }
}
