"""Static checks of the monitoring files (deploy/prometheus, deploy/grafana and their wiring in
docker-compose.production.yml). No Prometheus or Grafana runs here: every metric, label and
label value an alert or a dashboard panel names is checked against what the app exposes
(`app.metrics.Metrics`, the app's route table), with a small PromQL token reader."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from app.metrics import Metrics
from app.observability import MODEL_KINDS, PURPOSE_KINDS
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.production.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hera.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"

# Labels Prometheus adds to every scraped series; `up` is Prometheus's own series per target.
TARGET_LABELS = frozenset({"job", "instance"})
OTHER_SERIES = {"up": TARGET_LABELS}
# Grafana's interval variables, only ever inside a range `[...]`.
GRAFANA_VARIABLES = re.compile(r"\$__(?:rate_interval|interval|range)\b")
DURATION = re.compile(r"^(?:\d+[smhdwy])+$")
SEVERITIES = {"critical", "warning", "info"}


# ------------------------------------------------------------------ what the app exposes
@cache
def exposed_series() -> dict[str, frozenset[str]]:
    """Every series name the app can expose -> its labels (plus the target's and `le`)."""
    metrics = Metrics()
    # A family without samples yet does not show its label names; its wrapper knows them.
    label_names = {
        next(iter(wrapper.describe())).name: tuple(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    series: dict[str, frozenset[str]] = {}
    for family in metrics.registry.collect():
        assert family.type in suffixes, f"{family.name}: teach this test the {family.type} type"
        labels = frozenset(label_names[family.name]) | TARGET_LABELS
        for suffix in suffixes[family.type]:
            series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def family_of(series: str) -> str:
    return re.sub(r"_(total|bucket|sum|count)$", "", series)


@cache
def _route_table() -> dict[str, frozenset[str]]:
    """Route template -> methods of the app with metrics on, as production runs it: the
    OpenAPI paths plus the routes kept out of the schema (`GET /metrics`)."""
    from app.main import create_app
    from app.routers import metrics as metrics_router

    app = create_app(Settings(_env_file=None, metrics_enabled=True))
    table = {
        path: frozenset(method.upper() for method in operations)
        for path, operations in app.openapi()["paths"].items()
    }
    for route in metrics_router.router.routes:
        table[route.path] = frozenset(route.methods)  # type: ignore[attr-defined]
    return table


def app_routes() -> frozenset[str]:
    """The values of the `route` label: templates, and app/middleware.py's two fallbacks."""
    return frozenset(_route_table()) | {"<unmatched>", "/<ui>"}


def chat_routes() -> frozenset[str]:
    """The two chat turns (interview and family): POST .../messages."""
    return frozenset(
        path
        for path, methods in _route_table().items()
        if "POST" in methods and path.endswith("/messages")
    )


MODEL_OUTCOMES = {
    "ok",
    "error",
    "timeout",
    "overloaded",
    "cancelled",
}  # app/observability.py model_call
STORE_OUTCOMES = {"ok", "error", "unavailable", "cancelled"}  # app/observability.py store_operation


def known_values(series: str, label: str) -> set[str] | None:
    """The values a label of a series takes (None: not checked, e.g. model names)."""
    fam = family_of(series)
    if label == "route":
        return set(app_routes())
    if label == "method":
        return {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}
    if label == "status":
        return {str(code) for code in range(100, 600)}
    if label == "store":
        return {"sessions", "blobs", "users"}
    if label == "outcome":
        return MODEL_OUTCOMES if fam.startswith("hera_model") else STORE_OUTCOMES
    if label == "kind" and fam.startswith("hera_model"):
        return {*MODEL_KINDS.values(), *PURPOSE_KINDS.values(), "other"}
    return None


# ------------------------------------------------------------------ a small PromQL reader
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])
    |(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[smhdwy]*)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>{}(),])""",
    re.X,
)
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk",
                "bottomk", "quantile", "count_values"}  # fmt: skip
FUNCTIONS = AGGREGATIONS | {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp",
    "clamp_max", "clamp_min", "count_over_time", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time",
    "predict_linear", "present_over_time", "quantile_over_time", "rate", "resets", "round",
    "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev_over_time", "sum_over_time", "time",
    "timestamp", "vector",
}  # fmt: skip
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]]  # (label, op, value)
    at: int  # token index


@dataclass
class Call:
    name: str
    span: tuple[int, int]  # token indices of its parentheses


@dataclass
class Grouping:
    keyword: str
    labels: list[str]
    span: tuple[int, int]  # the expression it applies to


@dataclass
class Parsed:
    selectors: list[Selector] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    groupings: list[Grouping] = field(default_factory=list)
    numbers: list[float] = field(default_factory=list)

    def inside(self, span: tuple[int, int]) -> list[Selector]:
        return [s for s in self.selectors if span[0] < s.at < span[1]]


def tokenize(expr: str) -> list[tuple[str, str]]:
    expr = GRAFANA_VARIABLES.sub("5m", expr)
    tokens, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        assert m.lastgroup is not None
        if m.lastgroup != "ws":
            tokens.append((m.lastgroup, m.group()))
        pos = m.end()
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    return body if text[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def parse(expr: str) -> Parsed:
    tokens = tokenize(expr)
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, (_, text) in enumerate(tokens):
        if text == "(":
            stack.append(i)
        elif text == ")":
            if not stack:
                raise ValueError(f"unbalanced ) in {expr!r}")
            pairs[stack.pop()] = i
    if stack:
        raise ValueError(f"unbalanced ( in {expr!r}")
    opening = {close: open_ for open_, close in pairs.items()}

    def text_at(i: int) -> str:
        return tokens[i][1] if 0 <= i < len(tokens) else ""

    out = Parsed()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "number":
            if not DURATION.match(text):
                out.numbers.append(float(text))
        elif kind == "op" and text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        elif kind == "ident" and text in GROUPING:
            if text_at(i + 1) != "(":  # a bare group_left / group_right
                i += 1
                continue
            close = pairs[i + 1]
            labels = [t for k, t in tokens[i + 2 : close] if k == "ident"]
            if text in ("by", "without") and text_at(i - 1) == ")":  # sum(x) by (a)
                span = (opening[i - 1], i - 1)
            elif text in ("by", "without"):  # sum by (a) (x)
                if text_at(close + 1) != "(":
                    raise ValueError(f"`{text} (...)` without an expression in {expr!r}")
                span = (close + 1, pairs[close + 1])
            else:  # on / ignoring: both sides of the operator
                span = (-1, len(tokens))
            out.groupings.append(Grouping(text, labels, span))
            i = close + 1
            continue
        elif kind == "ident" and text in AGGREGATIONS and text_at(i + 1) in ("by", "without"):
            end = pairs.get(i + 2)  # sum by (a) (x): the call's argument follows the labels
            if end is None or text_at(end + 1) != "(":
                raise ValueError(f"cannot read {text} {text_at(i + 1)} in {expr!r}")
            out.calls.append(Call(text, (end + 1, pairs[end + 1])))
        elif kind == "ident" and text_at(i + 1) == "(":
            if text not in FUNCTIONS:
                raise ValueError(f"unknown function {text}() in {expr!r}")
            out.calls.append(Call(text, (i + 1, pairs[i + 1])))
        elif kind == "ident" and text in KEYWORDS:
            pass
        elif kind == "ident":
            matchers: list[tuple[str, str, str]] = []
            if text_at(i + 1) == "{":
                j = i + 2
                while text_at(j) != "}":
                    label, op, value = tokens[j : j + 3]
                    if label[0] != "ident" or op[1] not in ("=", "!=", "=~", "!~"):
                        raise ValueError(f"cannot read the matchers of {text} in {expr!r}")
                    if value[0] != "string":
                        raise ValueError(f"{text}: {label[1]} needs a quoted value in {expr!r}")
                    matchers.append((label[1], op[1], _unquote(value[1])))
                    j += 3
                    if text_at(j) == ",":
                        j += 1
                out.selectors.append(Selector(text, matchers, i))
                i = j + 1
                continue
            out.selectors.append(Selector(text, matchers, i))
        i += 1
    return out


def _alternatives(regex: str) -> list[str]:
    """The top-level `|` branches of a regex."""
    parts, depth, start = [], 0, 0
    for pos, char in enumerate(regex):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(regex[start:pos])
            start = pos + 1
    return [*parts, regex[start:]]


def accepts(op: str, value: str, candidate: str) -> bool:
    """Whether one matcher lets a label value through (PromQL regexes are anchored)."""
    hit = re.fullmatch(value, candidate) is not None if "~" in op else value == candidate
    return hit if op in ("=", "=~") else not hit


def selected(selector: Selector, label: str, candidates: set[str] | frozenset[str]) -> set[str]:
    return {
        c
        for c in candidates
        if all(accepts(op, v, c) for lbl, op, v in selector.matchers if lbl == label)
    }


def series_labels(name: str) -> frozenset[str] | None:
    return exposed_series().get(name) or OTHER_SERIES.get(name)


def result_labels(parsed: Parsed) -> set[str]:
    """Roughly the labels the expression's result keeps (for `{{ $labels.x }}` / legends)."""
    kept = [g for g in parsed.groupings if g.keyword == "by"]
    if kept:
        return {label for g in kept for label in g.labels} - {"le"}
    return {label for s in parsed.selectors for label in series_labels(s.metric) or ()}


def problems(expr: str) -> list[str]:
    """Everything in one expression that names a series, label or value the app lacks."""
    try:
        parsed = parse(expr)
    except ValueError as exc:
        return [str(exc)]
    found: list[str] = []
    for sel in parsed.selectors:
        labels = series_labels(sel.metric)
        if labels is None:
            found.append(f"{sel.metric}: not a series the app exposes")
            continue
        for label, op, value in sel.matchers:
            if label not in labels:
                found.append(f"{sel.metric}: no label {label!r} (it has {sorted(labels)})")
                continue
            values = known_values(sel.metric, label)
            if values is None:
                continue
            branches = _alternatives(value) if "~" in op else [value]
            for branch in branches:
                if "~" in op:
                    known = any(re.fullmatch(branch, v) for v in values)
                else:
                    known = branch in values
                if not known:
                    found.append(f"{sel.metric}: {label}{op}{value!r}: {branch!r} is no value")
    for group in parsed.groupings:
        inner = parsed.inside(group.span)
        if not inner:
            found.append(f"{group.keyword} ({', '.join(group.labels)}) over no series")
        for sel in inner:
            missing = set(group.labels) - (series_labels(sel.metric) or set())
            if missing:
                found.append(f"{group.keyword} ({', '.join(sorted(missing))}): not on {sel.metric}")
    for call in parsed.calls:
        inner = parsed.inside(call.span)
        if call.name in COUNTER_FUNCTIONS:
            found += [
                f"{call.name}() of {s.metric}, not a counter"
                for s in inner
                if not s.metric.endswith(("_total", "_bucket", "_sum", "_count"))
            ]
        if call.name == "histogram_quantile":
            found += [
                f"histogram_quantile of {s.metric}"
                for s in inner
                if not s.metric.endswith("_bucket")
            ]
            if not any(
                "le" in g.labels and g.keyword == "by" and call.span[0] < g.span[0] < call.span[1]
                for g in parsed.groupings
            ):
                found.append("histogram_quantile without `by (le, ...)`")
    return found


def template_labels(text: str) -> set[str]:
    """`{{ $labels.x }}` in an annotation, `{{x}}` in a legend."""
    return set(re.findall(r"\{\{\s*\$labels\.(\w+)", text)) | set(
        re.findall(r"\{\{\s*(\w+)\s*\}\}", text)
    )


# ------------------------------------------------------------------ the files
def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    spec: dict[str, Any] = load_yaml(COMPOSE)
    return spec


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"{COMPOSE.name} has no `{name}` service"
    svc: dict[str, Any] = services[name]
    return svc


def mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, container path) of each volume, short (`src:dst[:ro]`) or long syntax."""
    found = []
    for volume in svc.get("volumes") or []:
        if isinstance(volume, dict):
            found.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            source, dest, *_ = str(volume).split(":")
            found.append((source, dest))
    return found


def host_path(svc: dict[str, Any], container_path: str) -> Path | None:
    """The file of deploy/ that a bind mount of the service puts at `container_path`."""
    best: tuple[int, Path] | None = None
    target = PurePosixPath(container_path)
    for source, dest in mounts(svc):
        if not source.startswith((".", "/")):
            continue  # a named volume
        dest_path = PurePosixPath(dest)
        if target == dest_path or dest_path in target.parents:
            rest = target.relative_to(dest_path)
            if best is None or len(dest_path.parts) > best[0]:
                best = (len(dest_path.parts), (COMPOSE.parent / source / rest).resolve())
    return None if best is None else best[1]


def networks(svc: dict[str, Any]) -> set[str]:
    nets = svc.get("networks") or ["default"]
    return set(nets)


def published_ports(svc: dict[str, Any]) -> list[str]:
    return [str(p) for p in svc.get("ports") or []]


def prometheus_config_path() -> str:
    command = service("prometheus").get("command") or []
    for arg in command:
        if str(arg).startswith("--config.file="):
            return str(arg).split("=", 1)[1]
    return "/etc/prometheus/prometheus.yml"  # the image's default


def prometheus_config() -> dict[str, Any]:
    path = host_path(service("prometheus"), prometheus_config_path())
    assert path is not None and path.is_file(), f"prometheus's config is not mounted: {path}"
    assert path == DEPLOY / "prometheus" / "prometheus.yml"
    config: dict[str, Any] = load_yaml(path)
    return config


def api_job() -> dict[str, Any]:
    jobs = [
        job
        for job in prometheus_config()["scrape_configs"]
        if any("api" in sd.get("names", []) for sd in job.get("dns_sd_configs", []))
    ]
    assert len(jobs) == 1, "one scrape job finds the `api` service by Docker DNS"
    job: dict[str, Any] = jobs[0]
    return job


def alert_rules() -> list[dict[str, Any]]:
    spec = load_yaml(ALERTS)
    return [rule for group in spec["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    return [
        (panel["title"], target)
        for panel in dashboard()["panels"]
        if panel.get("type") != "row"
        for target in panel.get("targets") or []
    ]


def provisioned_datasource() -> dict[str, Any]:
    sources = [
        ds
        for path in sorted((PROVISIONING / "datasources").glob("*.y*ml"))
        for ds in load_yaml(path).get("datasources") or []
        if ds.get("type") == "prometheus"
    ]
    assert len(sources) == 1, sources
    source: dict[str, Any] = sources[0]
    return source


# ------------------------------------------------------------------ the reader itself
def test_the_promql_reader_finds_series_labels_and_groupings() -> None:
    parsed = parse(
        'histogram_quantile(0.95, sum by (le, route) (rate(hera_x_bucket{a="b", c=~"d|e"}[$__rate_interval])))'
        " / on (route) group_left sum(rate(hera_y_total[5m])) by (route) > 0.5"
    )
    assert [(s.metric, s.matchers) for s in parsed.selectors] == [
        ("hera_x_bucket", [("a", "=", "b"), ("c", "=~", "d|e")]),
        ("hera_y_total", []),
    ]
    assert [
        (g.keyword, g.labels, [s.metric for s in parsed.inside(g.span)]) for g in parsed.groupings
    ] == [
        ("by", ["le", "route"], ["hera_x_bucket"]),
        ("on", ["route"], ["hera_x_bucket", "hera_y_total"]),
        ("by", ["route"], ["hera_y_total"]),
    ]
    assert [c.name for c in parsed.calls] == ["histogram_quantile", "sum", "rate", "sum", "rate"]
    assert parsed.numbers == [0.95, 0.5]


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("rate(hera_http_request_total[5m])", "not a series"),
        ('rate(hera_http_requests_total{path="/"}[5m])', "no label 'path'"),
        ("sum by (kind) (rate(hera_http_requests_total[5m]))", "not on hera_http_requests_total"),
        ('rate(hera_model_calls_total{outcome!="OK"}[5m])', "is no value"),
        ('rate(hera_store_operations_total{store=~"sessions|redis"}[5m])', "'redis' is no value"),
        ('rate(hera_http_requests_total{route="/api/session/{id}"}[5m])', "is no value"),
        (
            "histogram_quantile(0.95, sum by (route) (rate(hera_http_request_duration_seconds_bucket[5m])))",
            "by (le",
        ),
        (
            "histogram_quantile(0.95, rate(hera_http_request_duration_seconds_sum[5m]))",
            "histogram_quantile of",
        ),
        ("rate(hera_turns_in_flight[5m])", "not a counter"),
        ("histogram_quantil(0.9, x)", "unknown function"),
        ('{__name__="hera_session_busy_total"}', "without a metric name"),
    ],
)
def test_the_checker_catches_a_wrong_expression(expr: str, complaint: str) -> None:
    found = problems(expr)
    assert any(complaint in p for p in found), found


def test_the_app_exposes_the_series_the_files_rely_on() -> None:
    series = exposed_series()
    assert series["hera_http_requests_total"] >= {"method", "route", "status"}
    assert "le" in series["hera_http_request_duration_seconds_bucket"]
    assert "le" not in series["hera_http_request_duration_seconds_count"]
    assert "hera_turns_in_flight" in series and "hera_turns_in_flight_total" not in series
    assert len(chat_routes()) == 2, chat_routes()


# ------------------------------------------------------------------ Prometheus
def test_prometheus_scrapes_every_api_replica_on_its_metrics_route() -> None:
    config = prometheus_config()
    job = api_job()
    api = service("api")
    port = int(api.get("environment", {}).get("PORT", Settings.model_fields["port"].default))
    sd = next(sd for sd in job["dns_sd_configs"] if "api" in sd["names"])
    assert sd.get("type", "A") == "A" and sd["port"] == port
    assert job.get("metrics_path", "/metrics") == "/metrics" in app_routes()
    assert job.get("scheme", "http") == "http"
    interval = job.get("scrape_interval") or config["global"]["scrape_interval"]
    assert interval == "15s"
    # Docker's DNS answers `api` only on a network both services are on.
    assert networks(service("prometheus")) & networks(api)


def test_prometheus_loads_the_alert_rules_file() -> None:
    config_dir = PurePosixPath(prometheus_config_path()).parent
    rule_files = prometheus_config().get("rule_files") or []
    assert rule_files
    loaded = set()
    for rule_file in rule_files:
        in_container = config_dir / rule_file  # relative paths are the config file's
        path = host_path(service("prometheus"), str(in_container))
        assert path is not None and path.is_file(), f"{rule_file}: not mounted from deploy/"
        loaded.add(path)
    assert ALERTS in loaded


def test_every_alert_rule_is_complete() -> None:
    rules = alert_rules()
    names = [rule.get("alert") for rule in rules]
    assert len(names) == len(set(names)), names
    for rule in rules:
        name = rule.get("alert")
        assert name and isinstance(rule.get("expr"), str) and rule["expr"].strip(), rule
        assert DURATION.match(str(rule.get("for", ""))), f"{name}: `for` is {rule.get('for')!r}"
        assert (rule.get("labels") or {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations") or {}
        assert str(annotations.get("summary", "")).strip(), f"{name}: no summary"
        assert str(annotations.get("description", "")).strip(), f"{name}: no description"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: str(r.get("alert")))
def test_alert_names_only_what_the_app_exposes(rule: dict[str, Any]) -> None:
    assert problems(rule["expr"]) == []
    parsed = parse(rule["expr"])
    for text in (rule.get("annotations") or {}).values():
        missing = template_labels(str(text)) - result_labels(parsed)
        assert not missing, f"annotation uses labels the result lacks: {missing}"


def _alerts_with(predicate: Any) -> list[str]:
    found = []
    for rule in alert_rules():
        parsed = parse(rule["expr"])
        if predicate(rule["expr"], parsed):
            found.append(rule["alert"])
    return found


def _selectors(parsed: Parsed, metric: str) -> list[Selector]:
    return [s for s in parsed.selectors if s.metric == metric]


def _is_ratio(expr: str, parsed: Parsed, metric: str) -> bool:
    return (
        len(_selectors(parsed, metric)) >= 2
        and "/" in expr
        and any(0 < n < 1 for n in parsed.numbers)
    )


def test_an_alert_covers_the_5xx_ratio() -> None:
    def fits(expr: str, parsed: Parsed) -> bool:
        sels = _selectors(parsed, "hera_http_requests_total")
        codes = {"200", "404", "500", "503"}
        return _is_ratio(expr, parsed, "hera_http_requests_total") and any(
            selected(s, "status", codes) == {"500", "503"} for s in sels
        )

    assert _alerts_with(fits)


def test_an_alert_covers_the_model_error_ratio() -> None:
    def fits(expr: str, parsed: Parsed) -> bool:
        sels = _selectors(parsed, "hera_model_calls_total")
        return _is_ratio(expr, parsed, "hera_model_calls_total") and any(
            selected(s, "outcome", MODEL_OUTCOMES) == MODEL_OUTCOMES - {"ok", "cancelled"}
            for s in sels
        )

    assert _alerts_with(fits)


def test_an_alert_covers_the_p95_latency_of_both_chat_turns() -> None:
    def fits(expr: str, parsed: Parsed) -> bool:
        quantiles = [c for c in parsed.calls if c.name == "histogram_quantile"]
        sels = _selectors(parsed, "hera_http_request_duration_seconds_bucket")
        return (
            bool(quantiles)
            and re.search(r"histogram_quantile\(\s*0\.95\s*,", expr) is not None
            and any(selected(s, "route", app_routes()) == chat_routes() for s in sels)
            and any(n >= 1 for n in parsed.numbers)  # a threshold in seconds
        )

    assert _alerts_with(fits)


def test_an_alert_covers_redis_being_unavailable() -> None:
    def fits(expr: str, parsed: Parsed) -> bool:
        return any(
            selected(s, "outcome", STORE_OUTCOMES) == {"unavailable"}
            and selected(s, "store", {"sessions", "blobs", "users"}) == {"sessions", "users"}
            for s in _selectors(parsed, "hera_store_operations_total")
        )

    assert _alerts_with(fits)


def test_an_alert_covers_a_replica_that_is_down() -> None:
    job = api_job()["job_name"]

    def fits(expr: str, parsed: Parsed) -> bool:
        return re.search(r"==\s*0\b", expr) is not None and any(
            selected(s, "job", {job, "prometheus"}) == {job} for s in _selectors(parsed, "up")
        )

    assert _alerts_with(fits)


# ------------------------------------------------------------------ Grafana
def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards() -> None:
    grafana = service("grafana")
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == PROVISIONING.resolve()
    source = provisioned_datasource()
    assert source.get("uid") and source.get("access", "proxy") == "proxy"
    prometheus = service("prometheus")
    assert source["url"].rstrip("/") == "http://prometheus:9090"
    assert networks(grafana) & networks(prometheus)
    providers = [
        p
        for path in sorted((PROVISIONING / "dashboards").glob("*.y*ml"))
        for p in load_yaml(path).get("providers") or []
    ]
    assert providers
    folders = {host_path(grafana, p["options"]["path"]) for p in providers}
    assert DASHBOARD.parent.resolve() in folders, folders


def test_the_dashboard_is_grafana_json_over_the_provisioned_datasource() -> None:
    board = dashboard()
    assert isinstance(board.get("schemaVersion"), int) and board["schemaVersion"] >= 36
    assert board.get("uid") and board.get("title")
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    uid = provisioned_datasource()["uid"]
    graphs = [p for p in panels if p.get("type") != "row"]
    assert len(graphs) >= 12
    for panel in graphs:
        title = panel.get("title")
        assert title and panel.get("targets"), f"{title}: no targets"
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, title
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, title
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert str(target.get("expr", "")).strip(), title
            assert target.get("datasource", {"uid": uid})["uid"] == uid, title


@pytest.mark.parametrize(
    ("title", "target"),
    dashboard_targets(),
    ids=[f"{t}:{x['refId']}" for t, x in dashboard_targets()],
)
def test_dashboard_queries_name_only_what_the_app_exposes(
    title: str, target: dict[str, Any]
) -> None:
    assert problems(target["expr"]) == []
    missing = template_labels(target.get("legendFormat", "")) - result_labels(parse(target["expr"]))
    assert not missing, f"the legend uses labels the query drops: {missing}"


def test_the_dashboard_shows_every_series_family() -> None:
    used = {
        family_of(s.metric)
        for _, target in dashboard_targets()
        for s in parse(target["expr"]).selectors
    }
    families = {family_of(name) for name in exposed_series()}
    assert families - used == set(), "a series with no panel"


# ------------------------------------------------------------------ compose
def test_production_compose_turns_metrics_on() -> None:
    value = service("api")["environment"].get("METRICS_ENABLED")
    assert value is not None
    assert Settings(_env_file=None, metrics_enabled=value).metrics_enabled is True


@pytest.mark.parametrize(
    ("name", "image"), [("prometheus", "prom/prometheus:"), ("grafana", "grafana/grafana:")]
)
def test_monitoring_services_run_pinned_images_reachable_only_from_the_host(
    name: str, image: str
) -> None:
    svc = service(name)
    assert str(svc.get("image", "")).startswith(image) and not svc["image"].endswith(":latest")
    for port in published_ports(svc):
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"
    binds = [v for v in svc.get("volumes") or [] if str(v).startswith((".", "/"))]
    assert binds, f"{name} mounts nothing from deploy/"
    for volume in binds:
        path = (COMPOSE.parent / str(volume).split(":")[0]).resolve()
        assert path.exists() and DEPLOY.resolve() in (path, *path.parents), volume
        assert str(volume).endswith(":ro"), f"{volume}: mount the configuration read-only"


def test_grafana_admin_password_comes_from_the_environment_without_a_default() -> None:
    env = service("grafana").get("environment") or {}
    assert isinstance(env, dict)
    password = str(env.get("GF_SECURITY_ADMIN_PASSWORD", ""))
    assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?\?[^}]*)?\}", password), password
    assert str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"
