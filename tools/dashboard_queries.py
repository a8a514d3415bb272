#!/usr/bin/env python
"""Extract every Prometheus query of the Grafana dashboards and run it.

The dashboards (classic JSON model, roles/grafana/files/dashboards/<Folder>/
*.json) hold PromQL in panel targets, template variables and annotations.
This module pulls them all out, replaces Grafana's variables with values
Prometheus accepts, and runs each against a Prometheus server's
/api/v1/query, reporting per query whether Prometheus accepted it and how
many series it returned.

As a module (the molecule verify step, the unit tests):

    from dashboard_queries import extract_queries, run_queries
    queries = extract_queries("roles/grafana/files/dashboards")
    for result in run_queries("http://127.0.0.1:9090", queries):
        print(result["status"], result["series"], result["expr"])

As a command:

    tools/dashboard_queries.py --url http://127.0.0.1:9090
    tools/dashboard_queries.py --list
    tools/dashboard_queries.py --url URL --json --expect-data 'hosts.json/CPU'
    tools/dashboard_queries.py --url URL --contract examples/metric-contracts/fastapi-instrumentator.yml

The ML dashboards are first set to a metric contract, as the grafana role
sets them (plugins/filter/ml_dashboard.py): the values the files
hold (the sample app's), or those of a vars file with grafana_ml_metrics and
grafana_ml_labels (--contract; prometheus_ml_* when it has no grafana_ml_*).

Variable substitution: a query, custom or textbox variable with "All" or
multiple values becomes `.*` (what Grafana sends for "All" with
allValue ".*"); other variables their current value (or first option).
$__rate_interval and $__interval become 1m, $__range 5m ($__range_s 300,
$__range_ms and $__interval_ms in milliseconds). Variables the dashboard
does not define ($1 in label_replace, ...) are left alone, as Grafana does.
Template-variable queries are turned into PromQL: label_values(m, l)
becomes `group by (l) (m)`, label_values(l) `group by (l) ({l!=""})`,
query_result(q) `q`, metrics(re) `group by (__name__) ({__name__=~"re"})`.

Exit status of the command: 0 when every query was accepted (and every
--expect-data pattern matched a query that returned data), 1 otherwise,
2 for usage errors.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "roles" / "grafana" / "files" / "dashboards"
# The contract filter the grafana role runs (plugins/filter/ml_dashboard.py), imported
# by the collection's name: from an installed copy through its collections path, from a
# clone through collections/.
_COLLECTIONS = str(ROOT.parents[2] if ROOT.parent.parent.name == "ansible_collections" else ROOT / "collections")
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)
from ansible_collections.monstack.stack.plugins.filter.ml_dashboard import apply_contract  # noqa: E402

# Grafana's global variables, with the values used to run the queries.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# $name, ${name}, ${name:format}, ${name.field}, [[name]], [[name:format]]
_VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?:\.[^}:]*)?(?::[^}]*)?\}"
    r"|\[\[(?P<bracketed>\w+)(?::[^\]]*)?\]\]"
    r"|\$(?P<plain>\w+)"
)

PROMETHEUS_TYPES = {"prometheus"}


# --------------------------------------------------------------- loading
def load_dashboards(dashboard_dir: str | Path) -> list[tuple[str, dict]]:
    """Every *.json below dashboard_dir as (path relative to it, dashboard), sorted."""
    root = Path(dashboard_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no dashboard directory {root}")
    out = []
    for path in sorted(root.rglob("*.json")):
        with path.open(encoding="utf-8") as fh:
            out.append((path.relative_to(root).as_posix(), json.load(fh)))
    return out


def load_contract(path: str | Path) -> tuple[dict, dict]:
    """(metrics, labels) of a vars file (examples/metric-contracts/<name>.yml)."""
    import yaml  # only needed here

    values = yaml.safe_load(Path(path).read_text()) or {}
    metrics = values.get("grafana_ml_metrics", values.get("prometheus_ml_metrics"))
    labels = values.get("grafana_ml_labels", values.get("prometheus_ml_labels"))
    if not isinstance(metrics, dict) or not isinstance(labels, dict):
        raise ValueError(f"{path}: no grafana_ml_metrics/grafana_ml_labels (or prometheus_ml_*) mappings")
    return metrics, labels


def render_dashboards(dashboard_dir: str | Path, dest: str | Path, metrics: dict | None = None,
                      labels: dict | None = None) -> list[Path]:
    """Write the dashboards, set to the contract, below dest (as the grafana role copies them)."""
    written = []
    for rel, board in load_dashboards(dashboard_dir):
        path = Path(dest) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(apply_contract(board, metrics, labels), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def iter_panels(panels: Iterable[dict]) -> Iterator[dict]:
    """Panels in order, including those nested in (collapsed) rows."""
    for panel in panels or []:
        yield panel
        yield from iter_panels(panel.get("panels", []))


# ------------------------------------------------------------ variables
def _first_value(current: Any) -> Any:
    if isinstance(current, dict):
        current = current.get("value")
    if isinstance(current, list):
        return current[0] if len(current) == 1 else None if not current else "__multi__"
    return current


def variable_values(dashboard: dict) -> dict[str, str]:
    """Substitution value of each template variable of the dashboard (plus the built-ins)."""
    values = dict(BUILTINS)
    for var in dashboard.get("templating", {}).get("list", []):
        name = var.get("name")
        if not name:
            continue
        kind = var.get("type", "query")
        current = _first_value(var.get("current", {}))
        if kind == "constant":
            values[name] = str(var.get("query", ""))
        elif kind == "interval":
            values[name] = "1m"
        elif kind == "datasource":
            values[name] = str(current or "")
        elif kind == "textbox":
            values[name] = str(current if current not in (None, "") else var.get("query") or ".*")
        elif current in ("$__all", "__multi__"):
            # "All" or several values: Grafana sends allValue (or a regex of every value).
            values[name] = var.get("allValue") or ".*"
        elif current not in (None, ""):
            values[name] = str(current)
        elif kind == "custom":
            options = [o.get("value") for o in var.get("options", [])
                       if o.get("value") not in (None, "", "$__all")]
            values[name] = str(options[0]) if options else ".*"
        else:  # a query variable not resolved yet: what "All" would send
            values[name] = var.get("allValue") or ".*"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace the variables Grafana knows in expr; leave unknown ones ($1, ...) alone."""

    def repl(match: re.Match) -> str:
        name = match.group("braced") or match.group("bracketed") or match.group("plain")
        return values.get(name, match.group(0))

    # Two passes: a variable's value may itself hold a built-in ($__interval).
    return _VARIABLE.sub(repl, _VARIABLE.sub(repl, expr))


def _split_top_level(args: str) -> list[str]:
    """Split on commas outside (), {}, [] and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    i = 0
    while i < len(args):
        ch = args[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(args[start:i].strip())
            start = i + 1
        i += 1
    parts.append(args[start:].strip())
    return [p for p in parts if p]


def variable_query_to_promql(query: str) -> str | None:
    """PromQL equivalent of a Prometheus template-variable query, None if it has none."""
    query = query.strip()
    match = re.fullmatch(r"(\w+)\s*\((.*)\)", query, re.S)
    if not match:
        return query or None  # a bare PromQL expression (qryType 3 "query result")
    func, args = match.group(1), _split_top_level(match.group(2))
    if func == "label_values":
        if len(args) == 1:
            return f'group by ({args[0]}) ({{{args[0]}!=""}})'
        if len(args) == 2:
            return f"group by ({args[1]}) ({args[0]})"
        raise ValueError(f"label_values takes one or two arguments: {query}")
    if func == "query_result":
        return match.group(2).strip()
    if func == "metrics":
        regex = match.group(2).strip().replace("\\", "\\\\").replace('"', '\\"')
        return f'group by (__name__) ({{__name__=~"{regex}"}})'
    if func == "label_names":
        return None  # served by /api/v1/labels, not a PromQL query
    return query  # an ordinary PromQL function call


def _is_prometheus(datasource: Any, default: bool) -> bool:
    if isinstance(datasource, dict):
        if datasource.get("type"):
            return datasource["type"] in PROMETHEUS_TYPES
        return default
    if isinstance(datasource, str):
        return "prometheus" in datasource.lower() or datasource.startswith("$")
    return default


# ------------------------------------------------------------ extraction
def extract_queries(dashboard_dir: str | Path, metrics: dict | None = None,
                    labels: dict | None = None) -> list[dict]:
    """Every Prometheus query of the dashboards below dashboard_dir.

    The dashboards are set to the metric contract first (metrics and labels
    as grafana_ml_metrics and grafana_ml_labels; None: the values the files
    hold). Each item: dashboard (path below the directory), title (of the
    dashboard), uid, kind (panel, variable or annotation), panel (panel,
    variable or annotation title/name), panel_id, ref_id, instant (bool),
    raw (the expression as written) and expr (with variables substituted).
    """
    queries: list[dict] = []
    for rel, raw_board in load_dashboards(dashboard_dir):
        board = apply_contract(raw_board, metrics, labels)
        values = variable_values(board)
        common = {"dashboard": rel, "title": board.get("title", ""), "uid": board.get("uid", "")}

        for var in board.get("templating", {}).get("list", []):
            if var.get("type", "query") != "query" or not _is_prometheus(var.get("datasource"), True):
                continue
            query = var.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or var.get("definition", ""))
            promql = variable_query_to_promql(text)
            if promql is None:
                continue
            queries.append({**common, "kind": "variable", "panel": f"${var.get('name')}", "panel_id": None,
                            "ref_id": var.get("name"), "instant": True, "raw": text,
                            "expr": substitute(promql, values)})

        for ann in board.get("annotations", {}).get("list", []):
            expr = ann.get("expr") or (ann.get("target") or {}).get("expr")
            if not expr or not _is_prometheus(ann.get("datasource"), False):
                continue
            queries.append({**common, "kind": "annotation", "panel": ann.get("name", ""), "panel_id": None,
                            "ref_id": None, "instant": False, "raw": expr, "expr": substitute(expr, values)})

        for panel in iter_panels(board.get("panels", [])):
            panel_prom = _is_prometheus(panel.get("datasource"), True)
            for target in panel.get("targets", []) or []:
                expr = target.get("expr")
                if not expr or target.get("hide"):
                    continue
                if not _is_prometheus(target.get("datasource"), panel_prom):
                    continue
                queries.append({**common, "kind": "panel", "panel": panel.get("title", ""),
                                "panel_id": panel.get("id"), "ref_id": target.get("refId"),
                                "instant": bool(target.get("instant")) and not target.get("range"),
                                "raw": expr, "expr": substitute(expr, values)})
    return queries


# --------------------------------------------------------------- running
def _query(base_url: str, expr: str, timeout: float, at: float | None,
           basic_auth: tuple[str, str] | None, ca_file: str | None = None) -> dict:
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    request = urllib.request.Request(
        base_url.rstrip("/") + "/api/v1/query",
        data=urllib.parse.urlencode(params).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        method="POST",
    )
    if basic_auth:
        token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310 (URL given by the caller)
            return json.load(response)
    except urllib.error.HTTPError as err:  # Prometheus answers 400/422/503 with a JSON error body
        body = err.read().decode("utf-8", "replace")
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "errorType": f"http {err.code}", "error": body.strip()[:500]}


def run_queries(base_url: str, queries: Iterable[dict], timeout: float = 10.0, at: float | None = None,
                basic_auth: tuple[str, str] | None = None, ca_file: str | None = None) -> list[dict]:
    """Run each query (an item of extract_queries, or any dict with "expr") as an instant query.

    Returns one dict per query: the query's own keys plus status ("ok" or
    "error"), series (number of series or samples returned, 0 on error),
    result_type and error (message, "" when ok). Connection failures are
    errors of that query; nothing is raised. ca_file: a CA certificate to verify an
    https server with (a private CA, such as the test scenario's).
    """
    results = []
    for query in queries:
        result = dict(query)
        try:
            answer = _query(base_url, query["expr"], timeout, at, basic_auth, ca_file)
        except (urllib.error.URLError, OSError, ValueError) as err:
            answer = {"status": "error", "errorType": "connection", "error": str(err)}
        if answer.get("status") == "success":
            data = answer.get("data", {})
            value = data.get("result", [])
            result.update(status="ok", result_type=data.get("resultType", ""),
                          series=len(value) if data.get("resultType") in ("vector", "matrix") else 1,
                          error="")
        else:
            result.update(status="error", result_type="", series=0,
                          error=f"{answer.get('errorType', 'error')}: {answer.get('error', answer)}")
        results.append(result)
    return results


# ------------------------------------------------------------------- CLI
def _label(item: dict) -> str:
    where = item["panel"] if item["kind"] == "panel" else f"{item['kind']} {item['panel']}"
    ref = f" [{item['ref_id']}]" if item.get("ref_id") and item["kind"] == "panel" else ""
    return f"{item['dashboard']}/{where}{ref}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="dashboard directory (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="only print the extracted queries")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per query (default: %(default)s)")
    parser.add_argument("--basic-auth", metavar="USER:PASSWORD", help="basic auth towards Prometheus")
    parser.add_argument("--contract", metavar="VARS_FILE",
                        help="set the ML dashboards to this metric contract (examples/metric-contracts/*.yml)")
    parser.add_argument("--expect-data", action="append", default=[], metavar="REGEX",
                        help="fail unless a query whose 'dashboard/panel' matches REGEX returns data "
                             "(repeatable)")
    args = parser.parse_args(argv)

    try:
        contract = load_contract(args.contract) if args.contract else (None, None)
        queries = extract_queries(args.dir, *contract)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.list:
        if args.json:
            print(json.dumps(queries, indent=2))
        else:
            for item in queries:
                print(f"{_label(item)}\n    {item['expr']}")
        return 0
    if not args.url:
        parser.error("--url is required (or use --list)")
    auth = tuple(args.basic_auth.split(":", 1)) if args.basic_auth else None

    results = run_queries(args.url, queries, timeout=args.timeout, basic_auth=auth)
    failed = [r for r in results if r["status"] != "ok"]
    missing = [p for p in args.expect_data
               if not any(re.search(p, _label(r)) and r["series"] > 0 for r in results)]
    if args.json:
        print(json.dumps({"results": results, "errors": len(failed), "missing_data": missing}, indent=2))
    else:
        for r in results:
            state = f"ok    {r['series']:>4} series" if r["status"] == "ok" else "ERROR"
            print(f"{state}  {_label(r)}")
            if r["status"] != "ok":
                print(f"        {r['error']}\n        {r['expr']}")
        with_data = sum(1 for r in results if r["status"] == "ok" and r["series"] > 0)
        print(f"\n{len(results)} queries: {len(results) - len(failed)} accepted ({with_data} with data), "
              f"{len(failed)} errors")
        for pattern in missing:
            print(f"no data for any query matching {pattern!r}")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
