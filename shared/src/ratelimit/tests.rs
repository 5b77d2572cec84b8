#![allow(clippy::unwrap_used)]

use super::*;

const MIN: i64 = 60_000;

/// From a quiet start a burst gets exactly `limit` admissions, then one
/// more only as the previous window's weight decays.
#[test]
fn burst_then_slide() {
    let mut w = Window::default();
    let mut admitted = 0;
    for i in 0..150 {
        if admit(&mut w, 1_000 + i, MIN, 100).is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100);
    // Still in the first window: refused, and told to wait for the next one.
    let wait = admit(&mut w, 30_000, MIN, 100).unwrap_err();
    // window ends at 61_000; at 61_000 + 60_000 * (1 - 99/100) = 61_600 one fits.
    assert_eq!(wait, 61_600 - 30_000);
    assert!(admit(&mut w, 61_599, MIN, 100).is_err());
    assert!(admit(&mut w, 61_600, MIN, 100).is_ok());
    // Half-way through the second window the previous 100 weigh 50, so
    // this window holds 50: the one admitted at 61_600 and 49 more.
    let mut more = 0;
    for _ in 0..100 {
        if admit(&mut w, 91_000, MIN, 100).is_ok() {
            more += 1;
        }
    }
    assert_eq!(more, 49);
    // Two idle windows later everything is forgotten.
    for _ in 0..100 {
        assert!(admit(&mut w, 300_000, MIN, 100).is_ok());
    }
    assert!(admit(&mut w, 300_001, MIN, 100).is_err());
}

/// The wait reported for a refusal is exactly when the next request fits.
#[test]
fn wait_is_exact() {
    let mut w = Window {
        start: 1,
        current: 10,
        previous: 80,
    };
    // at now = 30_001: 80 * 0.5 + 10 = 50 -> limit 50 refuses.
    let wait = admit(&mut w, 30_001, MIN, 50).unwrap_err();
    // need 80 * (60_000 - e) / 60_000 + 11 <= 50 -> e >= 30_750
    assert_eq!(wait, 750);
    assert!(admit(&mut w.clone(), 30_001 + 749, MIN, 50).is_err());
    assert!(admit(&mut w, 30_001 + 750, MIN, 50).is_ok());
}

#[test]
fn overrides_parse() {
    let o: Overrides = "/a=5, https://x/y?z=1=20,,".parse().unwrap();
    assert_eq!(o.0.get("/a"), Some(&5));
    assert_eq!(o.0.get("https://x/y?z=1"), Some(&20));
    assert_eq!("".parse::<Overrides>().unwrap(), Overrides::default());
    assert!("/a".parse::<Overrides>().is_err());
    assert!("/a=x".parse::<Overrides>().is_err());
    assert!("=5".parse::<Overrides>().is_err());
    let limits = Limits {
        per_minute: 100,
        overrides: "/vip=0,/slow=3".parse().unwrap(),
        per_tenant: 0,
    };
    assert_eq!(limits.for_source("/any"), Some(100));
    assert_eq!(limits.for_source("/vip"), None);
    assert_eq!(limits.for_source("/slow"), Some(3));
}

/// Keys are scoped per key and a per-source override applies.
#[tokio::test]
async fn in_process_limits() {
    let l = Limiter::in_process(Limits {
        per_minute: 3,
        overrides: "/one=1".parse().unwrap(),
        per_tenant: 0,
    });
    for _ in 0..3 {
        assert_eq!(l.check("a/src", "/src").await, Decision::Admitted);
    }
    assert!(matches!(
        l.check("a/src", "/src").await,
        Decision::Limited { limit: 3, .. }
    ));
    assert_eq!(l.check("b/src", "/src").await, Decision::Admitted);
    assert_eq!(l.check("a/one", "/one").await, Decision::Admitted);
    assert!(matches!(
        l.check("a/one", "/one").await,
        Decision::Limited { limit: 1, .. }
    ));
}

/// A tenant rotating sources hits its total; a refused request counts
/// nowhere; other tenants and untenanted requests are not affected.
#[tokio::test]
async fn tenant_total_bounds_rotating_sources() {
    let l = Limiter::in_process(Limits {
        per_minute: 2,
        overrides: "/vip=0".parse().unwrap(),
        per_tenant: 5,
    });
    for i in 0..5 {
        let d = l.check_principal(Some("globex"), &format!("/s{i}")).await;
        assert_eq!(d, Decision::Admitted);
    }
    let d = l.check_principal(Some("globex"), "/s9").await;
    assert!(
        matches!(
            d,
            Decision::Limited {
                limit: 5,
                scope: Scope::Tenant,
                ..
            }
        ),
        "{d:?}"
    );
    // An unlimited source still counts against the tenant's total.
    assert!(matches!(
        l.check_principal(Some("globex"), "/vip").await,
        Decision::Limited {
            scope: Scope::Tenant,
            ..
        }
    ));
    // The refused /s9 was not counted against its own limit of 2.
    let fresh = Limiter::in_process(Limits {
        per_minute: 2,
        overrides: Overrides::default(),
        per_tenant: 3,
    });
    assert_eq!(
        fresh.check_principal(Some("a"), "/x").await,
        Decision::Admitted
    );
    assert_eq!(
        fresh.check_principal(Some("a"), "/x").await,
        Decision::Admitted
    );
    assert!(matches!(
        fresh.check_principal(Some("a"), "/x").await,
        Decision::Limited {
            limit: 2,
            scope: Scope::Principal,
            ..
        }
    ));
    // Only two of the tenant's three were spent.
    assert_eq!(
        fresh.check_principal(Some("a"), "/y").await,
        Decision::Admitted
    );
    assert!(matches!(
        fresh.check_principal(Some("a"), "/z").await,
        Decision::Limited {
            scope: Scope::Tenant,
            ..
        }
    ));
    // Same source, other tenant: its own counters.
    assert_eq!(
        l.check_principal(Some("acme"), "/s0").await,
        Decision::Admitted
    );
    for _ in 0..2 {
        assert_eq!(l.check_principal(None, "/s0").await, Decision::Admitted);
    }
    assert!(matches!(
        l.check_principal(None, "/s0").await,
        Decision::Limited {
            scope: Scope::Principal,
            ..
        }
    ));
}

#[test]
fn admit_all_counts_in_all_or_none() {
    let (mut a, mut b) = (Window::default(), Window::default());
    assert!(admit_all(&mut [(&mut a, 2), (&mut b, 1)], 10, MIN).is_ok());
    assert_eq!((a.current, b.current), (1, 1));
    let err = admit_all(&mut [(&mut a, 2), (&mut b, 1)], 11, MIN).unwrap_err();
    assert_eq!(err.0, 1);
    assert_eq!((a.current, b.current), (1, 1));
}

#[test]
fn long_keys_are_bounded() {
    let a = counter_key(&"x".repeat(5000));
    let b = counter_key(&format!("{}y", "x".repeat(4999)));
    assert!(a.len() < 150);
    assert_ne!(a, b);
    assert_eq!(counter_key("short"), "short");
    let multi = "é".repeat(200);
    assert!(counter_key(&multi).len() < 150);
}
