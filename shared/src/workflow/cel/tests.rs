use super::*;

fn scope_fn(id: &str) -> StepRef {
    match id {
        "a" | "b" => StepRef::Visible,
        "later" => StepRef::Hidden("`later` is not a need".into()),
        _ => StepRef::Unknown,
    }
}

fn kinds(source: &str, foreach: bool, expect: Expect) -> Vec<ErrorKind> {
    let scope = Scope {
        foreach,
        step: &scope_fn,
    };
    match on_big_stack(|| compile(source, &scope, expect).map(|_| ())) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.into_iter().map(|p| p.kind).collect(),
    }
}

/// Well-formed expressions over known names compile.
#[test]
fn good_expressions_compile() {
    for src in [
        "input.n + 1",
        "steps.a.output.rain_mm > 1.0",
        "steps['b'].status == 'skipped'",
        "has(steps.a.output.x) ? steps.a.output.x : 0",
        "input.items.map(x, x * 2)",
        "input.items.filter(x, x > 1).map(y, input.items.exists(z, z == y))",
        "type(input.n) == int",
        "math.greatest(1, 2) + size(input.s)",
        "input.s.lowerAscii() + strings.quote('x')",
        "optional.of(1).hasValue()",
        "{'a': [1, 2, {'b': run.id}]}",
        "input.steps.map(steps, steps.nope)",
    ] {
        assert_eq!(kinds(src, false, Expect::Any), [], "{src}");
    }
    assert_eq!(kinds("item.x + index", true, Expect::Any), []);
}

/// Each static problem is reported with its kind.
#[test]
fn problems_have_kinds() {
    assert_eq!(kinds("input.(", false, Expect::Any), [ErrorKind::CelSyntax]);
    assert_eq!(kinds("   ", false, Expect::Any), [ErrorKind::CelSyntax]);
    assert_eq!(
        kinds("steps.nope.output", false, Expect::Any),
        [ErrorKind::CelUnknownStep]
    );
    assert_eq!(
        kinds("steps['nope'].output", false, Expect::Any),
        [ErrorKind::CelUnknownStep]
    );
    assert_eq!(
        kinds("has(steps.nope)", false, Expect::Any),
        [ErrorKind::CelUnknownStep]
    );
    assert_eq!(
        kinds("steps.later.output", false, Expect::Any),
        [ErrorKind::CelStepNotVisible]
    );
    assert_eq!(
        kinds("item + 1", false, Expect::Any),
        [ErrorKind::CelUnknownVariable]
    );
    assert_eq!(
        kinds("inptu.x", false, Expect::Any),
        [ErrorKind::CelUnknownVariable]
    );
    assert_eq!(
        kinds("'yes'", false, Expect::Bool),
        [ErrorKind::CelWrongType]
    );
    assert_eq!(kinds("3", false, Expect::List), [ErrorKind::CelWrongType]);
    assert_eq!(kinds("[1]", false, Expect::Map), [ErrorKind::CelWrongType]);
    assert_eq!(kinds("true", false, Expect::Bool), []);
    assert_eq!(
        kinds(
            "input.a.all(x, input.b.all(y, input.c.all(z, x == y && y == z)))",
            false,
            Expect::Bool
        ),
        [ErrorKind::CelTooComplex]
    );
    // Reported once although used twice.
    assert_eq!(
        kinds("steps.nope.x + steps.nope.y", false, Expect::Any),
        [ErrorKind::CelUnknownStep]
    );
}

/// Length and nesting are refused before the parser runs.
#[test]
fn limits_before_parsing() {
    let long = format!("'{}'", "x".repeat(MAX_EXPRESSION_LEN));
    assert_eq!(kinds(&long, false, Expect::Any), [ErrorKind::CelTooLong]);
    let deep = format!("{}1{}", "(".repeat(33), ")".repeat(33));
    assert_eq!(kinds(&deep, false, Expect::Any), [ErrorKind::CelTooDeep]);
    let ok = format!("{}1{}", "[".repeat(32), "]".repeat(32));
    assert_eq!(kinds(&ok, false, Expect::Any), []);
    // Brackets inside strings do not count.
    let quoted = format!(
        "'{}' + \"{}\" + r'\\' + '{}'",
        "(".repeat(40),
        "[".repeat(40),
        "{".repeat(40)
    );
    assert_eq!(bracket_depth(&quoted), 0);
    assert_eq!(bracket_depth("'''a ' ( ''' + (1)"), 1);
    assert_eq!(bracket_depth("'\\'(' + [1]"), 1);
    // A comment cannot hide brackets behind a quote.
    assert_eq!(bracket_depth("1 // it's '''\n + ((2))"), 2);
    assert_eq!(bracket_depth("// (((\n1"), 0);
    let hidden = format!("1 // '''\n + {}2{}", "(".repeat(40), ")".repeat(40));
    assert_eq!(kinds(&hidden, false, Expect::Any), [ErrorKind::CelTooDeep]);
}

/// Long flat expressions within the length limit neither crash nor hang the parser.
#[test]
fn long_flat_expressions_are_safe() {
    for src in [
        vec!["1"; 1500].join("+"),
        format!("{}true", "!".repeat(4000)),
        format!("{}1", "-".repeat(4000)),
        vec!["true ? 1"; 400].join(" : ") + " : 0",
        vec!["input.a"; 500].join(" && "),
    ] {
        let _ = kinds(&src, false, Expect::Any);
    }
}
