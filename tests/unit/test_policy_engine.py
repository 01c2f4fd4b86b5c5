"""The policy engine as a table of (policies, user) → decision cases, plus the pattern
rules (exact, wildcards, regex, DNs) and their validation. No app, no database."""

from __future__ import annotations

import time

import pytest

from services.policy import (
    MAX_REGEX_LENGTH,
    Rule,
    Subject,
    evaluate,
    group_name,
    match_value,
    parse_values,
    validate_pattern,
)

DEFAULT = 99
LDAP = 7
OTHER_LDAP = 8
FINANCE_DN = "cn=finance-approvers,ou=groups,dc=acme,dc=test"
SENSITIVE_DN = "cn=sensitive,ou=groups,dc=acme,dc=test"


def rule(id, attribute, values, profile=1, directory=LDAP, enabled=True, position=None):
    return Rule(id=id, position=id if position is None else position, name=f"rule {id}", profile_id=profile,
                directory_id=directory, attribute=attribute, values=values, enabled=enabled)


FIONA = Subject(directory_id=LDAP, username="fiona",
                attributes={"departmentNumber": ["Finance"], "department": ["Finance"], "mail": ["fiona@acme.test"],
                            "title": ["VP Finance"], "ou": ["Finance", "Leadership"]},
                groups=[FINANCE_DN, SENSITIVE_DN])
ZOE = Subject(directory_id=LDAP, username="zoe",
              attributes={"department": ["Engineering"], "mail": ["zoe@acme.test"], "cn": ["Zoë Ångström"]},
              groups=["cn=engineering,ou=groups,dc=acme,dc=test"])
TOM = Subject(directory_id=LDAP, username="tom", attributes={"department": ["Finance"]}, groups=[])
LOCAL_ANN = Subject(directory_id=None, username="ann", attributes={"mail": ["ann@acme.test"]}, groups=[])


CASES = [
    # (id, rules, subject, expected profile, expected matched rule)
    ("no policies → default", [], FIONA, DEFAULT, None),
    ("exact value", [rule(1, "department", ["Finance"], profile=2)], FIONA, 2, 1),
    ("exact ignores case", [rule(1, "department", ["FINANCE"], profile=2)], FIONA, 2, 1),
    ("exact is not a prefix", [rule(1, "department", ["Fin"], profile=2)], FIONA, DEFAULT, None),
    ("attribute name ignores case", [rule(1, "DEPARTMENT", ["finance"], profile=2)], FIONA, 2, 1),
    ("wildcard suffix", [rule(1, "mail", ["*@acme.test"], profile=2)], ZOE, 2, 1),
    ("wildcard middle", [rule(1, "title", ["VP * "], profile=2)], FIONA, 2, 1),
    ("wildcard must cover the whole value", [rule(1, "title", ["Finance*"], profile=2)], FIONA, DEFAULT, None),
    ("brackets are literal, not fnmatch classes", [rule(1, "department", ["[F]inance"], profile=2)], FIONA, DEFAULT, None),
    ("question mark is literal", [rule(1, "department", ["Financ?"], profile=2)], FIONA, DEFAULT, None),
    ("regex full match", [rule(1, "department", ["re:fin(ance|ancial)"], profile=2)], FIONA, 2, 1),
    ("regex is anchored", [rule(1, "department", ["re:fin"], profile=2)], FIONA, DEFAULT, None),
    ("regex ignores case", [rule(1, "username", ["re:[A-F].*"], profile=2)], FIONA, 2, 1),
    ("multi-valued: any value", [rule(1, "ou", ["Leadership"], profile=2)], FIONA, 2, 1),
    ("multi-valued: any pattern", [rule(1, "department", ["Sales", "Finance"], profile=2)], FIONA, 2, 1),
    ("memberOf full DN", [rule(1, "memberOf", [SENSITIVE_DN], profile=2)], FIONA, 2, 1),
    ("memberOf DN ignores case and spacing",
     [rule(1, "memberof", ["CN=Finance-Approvers, OU=Groups, DC=ACME, DC=test"], profile=2)], FIONA, 2, 1),
    ("memberOf DN escaping", [rule(1, "memberOf", ["cn=finance\\2Dapprovers,ou=groups,dc=acme,dc=test"], profile=2)],
     FIONA, 2, 1),
    ("memberOf never by prefix", [rule(1, "memberOf", ["cn=finance-approvers,ou=groups"], profile=2)], FIONA, DEFAULT, None),
    ("memberOf bare name is not a DN match", [rule(1, "memberOf", ["finance-approvers"], profile=2)], FIONA, DEFAULT, None),
    ("group_name is the CN", [rule(1, "group_name", ["Finance-Approvers"], profile=2)], FIONA, 2, 1),
    ("group_name with wildcard", [rule(1, "group_name", ["eng*"], profile=2)], ZOE, 2, 1),
    ("username pseudo-attribute", [rule(1, "username", ["ZOE"], profile=2)], ZOE, 2, 1),
    ("non-ASCII values", [rule(1, "cn", ["zoë ångström"], profile=2)], ZOE, 2, 1),
    ("missing attribute → next rule", [rule(1, "memberOf", [FINANCE_DN], profile=2), rule(2, "department", ["Finance"], profile=3)],
     TOM, 3, 2),
    ("missing attribute never matches a wildcard", [rule(1, "mail", ["*"], profile=2)], TOM, DEFAULT, None),
    ("disabled rule is skipped", [rule(1, "department", ["Finance"], profile=2, enabled=False)], FIONA, DEFAULT, None),
    ("disabled rule skipped, next matches",
     [rule(1, "department", ["Finance"], profile=2, enabled=False), rule(2, "department", ["*"], profile=3)], FIONA, 3, 2),
    ("other directory's rule does not apply", [rule(1, "department", ["Finance"], profile=2, directory=OTHER_LDAP)],
     FIONA, DEFAULT, None),
    ("local rule applies to local users", [rule(1, "username", ["ann"], profile=2, directory=None)], LOCAL_ANN, 2, 1),
    ("local rule does not apply to LDAP users", [rule(1, "username", ["fiona"], profile=2, directory=None)],
     FIONA, DEFAULT, None),
    ("first match wins", [rule(1, "department", ["Finance"], profile=2), rule(2, "memberOf", [SENSITIVE_DN], profile=3)],
     FIONA, 2, 1),
    ("order is by position, not list order",
     [rule(1, "department", ["Finance"], profile=2, position=5), rule(2, "memberOf", [SENSITIVE_DN], profile=3, position=0)],
     FIONA, 3, 2),
    ("no rule matches → default", [rule(1, "department", ["Sales"], profile=2), rule(2, "group_name", ["admins"], profile=3)],
     ZOE, DEFAULT, None),
    ("an unsafe regex stored behind the pages' back never matches", [rule(1, "username", ["re:(f+)+"], profile=2)],
     FIONA, DEFAULT, None),
]


@pytest.mark.parametrize("rules, subject, profile, matched", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decision(rules, subject, profile, matched):
    decision = evaluate(rules, subject, DEFAULT)
    assert (decision.profile_id, decision.matched_rule_id) == (profile, matched)
    assert decision.is_default == (matched is None)


def test_the_trace_says_what_was_tried_and_why():
    rules = [
        rule(1, "department", ["Sales"], profile=2, enabled=False),
        rule(2, "department", ["Sales"], profile=2, directory=OTHER_LDAP),
        rule(3, "employeeType", ["contractor"], profile=2),
        rule(4, "department", ["Sales", "Marketing"], profile=2),
        rule(5, "group_name", ["sensitive"], profile=3),
        rule(6, "department", ["*"], profile=4),
    ]
    decision = evaluate(rules, FIONA, DEFAULT)
    assert [s.outcome for s in decision.trace] == ["disabled", "other directory", "attribute missing", "no match", "matched"]
    assert [s.rule_id for s in decision.trace] == [1, 2, 3, 4, 5]  # rule 6 is never tried
    no_match, matched = decision.trace[3], decision.trace[4]
    assert no_match.compared == ["Finance"] and "'Finance' matches none of 'Sales', 'Marketing'" in no_match.reason
    assert matched.compared == ["finance-approvers", "sensitive"] and matched.pattern == "sensitive"
    assert matched.reason == "group_name 'sensitive' matches 'sensitive'"
    assert "no employeeType value" in decision.trace[2].reason


@pytest.mark.parametrize(
    "pattern, actual, expected",
    [
        ("Finance", "finance", True),
        ("Finance", " Finance ", True),
        ("*", "", True),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXbYYcd", False),
        ("a.c", "abc", False),  # a dot is literal outside re:
        ("re:a.c", "abc", True),
        ("re:a.c", "abcd", False),
        ("re:", "anything", False),
        ("re:abc(", "abc(", False),
        ("CN=Doe\\, Jane,OU=Staff,DC=x", "cn=doe\\2c jane,ou=staff,dc=x", True),
        ("cn=*,ou=groups,dc=acme,dc=test", FINANCE_DN, True),
        ("cn=*,ou=groups,dc=acme,dc=test", "cn=x,ou=groups,dc=acme,dc=test,dc=evil", False),
        ("", "", False),
    ],
)
def test_match_value(pattern, actual, expected):
    assert match_value(pattern, actual) is expected


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("Finance", None),
        ("fin*", None),
        ("re:^(it|ops)-.+$", None),
        ("re:[a-z]+", None),
        ("", "enter a value"),
        ("   ", "enter a value"),
        ("re:", "the regular expression after re: is empty"),
        ("re:abc(", "not a valid regular expression: missing ), unterminated subpattern at position 3"),
        ("re:[a-", "not a valid regular expression: unterminated character set at position 0"),
        ("re:(a+)+$", "the regular expression repeats a group that itself repeats"),
        ("re:(a|aa)*", "the regular expression repeats a group that itself repeats"),
        ("re:.*a.*b.*c.*d", "open-ended repeats"),
        ("re:" + "a" * (MAX_REGEX_LENGTH + 1), "too long"),
        ("bad\x00value", "contains control characters"),
    ],
)
def test_validate_pattern(pattern, message):
    result = validate_pattern(pattern)
    if message is None:
        assert result is None
    else:
        assert result is not None and message in result


def test_hostile_regexes_cannot_stall_a_sign_in():
    hostile = [rule(1, "username", ["re:(a+)+$", "re:(a|aa)*b", "re:(.*)*x"], profile=2)]
    victim = Subject(directory_id=LDAP, username="a" * 5000 + "!", attributes={}, groups=[])
    started = time.perf_counter()
    assert evaluate(hostile, victim, DEFAULT).profile_id == DEFAULT
    assert time.perf_counter() - started < 1.0  # a guard against hanging, not a benchmark


def test_long_values_are_not_run_through_regexes():
    assert match_value("re:a+", "a" * 100)
    assert not match_value("re:a+", "a" * 10_000)


@pytest.mark.parametrize(
    "text, values",
    [
        ("Finance", ["Finance"]),
        ("Finance, Sales,,Finance", ["Finance", "Sales"]),
        ("Finance\n\n  Sales  \n", ["Finance", "Sales"]),
        ("cn=a,ou=groups,dc=x\nfin*, ops", ["cn=a,ou=groups,dc=x", "fin*", "ops"]),
        ("re:a{1,3}", ["re:a{1,3}"]),
        (["a", " b "], ["a", "b"]),
        ("", []),
    ],
)
def test_values_are_typed_one_per_line_or_comma_separated(text, values):
    assert parse_values(text) == values


@pytest.mark.parametrize(
    "dn, name",
    [(FINANCE_DN, "finance-approvers"), ("CN=Doe\\, Jane,OU=x", "Doe, Jane"), ("ou=groups,dc=x", "ou=groups,dc=x"),
     ("not a dn", "not a dn")],
)
def test_group_name(dn, name):
    assert group_name(dn) == name
