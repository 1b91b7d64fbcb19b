"""A small client for the Dagster webserver's GraphQL API (what the UI itself uses).

Job launches go through ``dagster_graphql.DagsterGraphQLClient`` (the supported client); the
queries it does not cover (backfills, lineage, metadata, check results, schedules, logs) are
plain GraphQL posts with the standard library, so no extra dependency is needed."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable

REPOSITORY_NAME = "__repository__"
LOCATION_NAME = "launch_pipeline"
FINISHED_RUN_STATES = {"SUCCESS", "FAILURE", "CANCELED"}
FINISHED_BACKFILL_STATES = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED"}
FINISHED_BACKFILL_STATES |= {"CANCELED", "CANCELING"}

_METADATA_FIELDS = """
    label
    __typename
    ... on IntMetadataEntry { intValue }
    ... on FloatMetadataEntry { floatValue floatRepr }
    ... on TextMetadataEntry { text }
    ... on MarkdownMetadataEntry { mdStr }
    ... on BoolMetadataEntry { boolValue }
    ... on PathMetadataEntry { path }
    ... on JsonMetadataEntry { jsonString }
    ... on TableSchemaMetadataEntry { schema { columns { name type } } }
"""


class GraphQLError(RuntimeError):
    pass


def metadata_dict(entries: Iterable[dict]) -> dict:
    """GraphQL metadata entries -> {label: plain value}."""
    out = {}
    for e in entries:
        kind = e.get("__typename", "")
        if kind == "IntMetadataEntry":
            out[e["label"]] = e.get("intValue")
        elif kind == "FloatMetadataEntry":
            out[e["label"]] = e.get("floatValue")
        elif kind == "TextMetadataEntry":
            out[e["label"]] = e.get("text")
        elif kind == "MarkdownMetadataEntry":
            out[e["label"]] = e.get("mdStr")
        elif kind == "BoolMetadataEntry":
            out[e["label"]] = e.get("boolValue")
        elif kind == "PathMetadataEntry":
            out[e["label"]] = e.get("path")
        elif kind == "JsonMetadataEntry":
            out[e["label"]] = json.loads(e.get("jsonString") or "null")
        elif kind == "TableSchemaMetadataEntry":
            out[e["label"]] = [c["name"] for c in e["schema"]["columns"]]
        else:
            out[e["label"]] = kind
    return out


class DagsterGraphQL:
    """``DagsterGraphQL("127.0.0.1", 3000).query("{ version }")``."""

    def __init__(self, host: str, port: int, timeout: float = 60.0):
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}/graphql"
        self.timeout = timeout

    # ------------------------------------------------------------------ plumbing
    def query(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            payload = json.loads(resp.read())
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:2000])
        return payload["data"]

    def is_up(self) -> bool:
        try:
            return bool(self.query("{ version }").get("version"))
        except (OSError, urllib.error.URLError, GraphQLError, ValueError):
            return False

    def location_status(self, location: str = LOCATION_NAME) -> tuple[str | None, str | None]:
        """(load status, load error message) of a code location."""
        data = self.query(
            """
            { workspaceOrError { __typename ... on Workspace { locationEntries {
                name loadStatus
                locationOrLoadError { __typename ... on PythonError { message } }
            } } } }
            """
        )
        for entry in data["workspaceOrError"].get("locationEntries", []):
            if entry["name"] == location:
                err = entry.get("locationOrLoadError") or {}
                return entry["loadStatus"], err.get("message")
        return None, None

    def wait_until_loaded(self, deadline_s: float = 180.0, location: str = LOCATION_NAME) -> None:
        t_end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < t_end:
            if self.is_up():
                status, error = self.location_status(location)
                last = (status, error)
                if status == "LOADED":
                    if error:
                        raise GraphQLError(f"code location {location} failed to load: {error}")
                    return
            time.sleep(1.0)
        raise TimeoutError(f"webserver/code location not ready after {deadline_s}s (last: {last})")

    # ------------------------------------------------------------------ runs
    def launch_job(
        self,
        job_name: str,
        *,
        tags: dict | None = None,
        run_config: dict | None = None,
        asset_selection: list[str] | None = None,
    ) -> str:
        """Launch a job run with dagster-graphql's client; returns the run id."""
        from dagster_graphql import DagsterGraphQLClient

        client = DagsterGraphQLClient(self.host, port_number=self.port, timeout=int(self.timeout))
        return client.submit_job_execution(
            job_name,
            repository_location_name=LOCATION_NAME,
            repository_name=REPOSITORY_NAME,
            run_config=run_config or {},
            tags=tags or {},
            asset_selection=asset_selection,
        )

    def run_status(self, run_id: str) -> str:
        data = self.query(
            "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }",
            {"id": run_id},
        )
        return data["runOrError"].get("status", data["runOrError"]["__typename"])

    def wait_for_run(self, run_id: str, deadline_s: float = 300.0) -> str:
        t_end = time.monotonic() + deadline_s
        status = None
        while time.monotonic() < t_end:
            status = self.run_status(run_id)
            if status in FINISHED_RUN_STATES:
                return status
            time.sleep(1.0)
        raise TimeoutError(f"run {run_id} not finished after {deadline_s}s (status {status})")

    def run_messages(self, run_id: str) -> list[dict]:
        """Every event of a run: ``{"type", "step", "message", "error"}``."""
        out: list[dict] = []
        cursor = None
        while True:
            data = self.query(
                """
                query($id: ID!, $cursor: String) {
                  logsForRun(runId: $id, afterCursor: $cursor, limit: 1000) {
                    __typename
                    ... on EventConnection { cursor hasMore events {
                      __typename
                      ... on MessageEvent { message eventType }
                      ... on StepEvent { stepKey }
                      ... on ExecutionStepFailureEvent { error { message } }
                      ... on RunFailureEvent { error { message } }
                      ... on EngineEvent { error { message } }
                    } }
                  }
                }
                """,
                {"id": run_id, "cursor": cursor},
            )["logsForRun"]
            for ev in data.get("events", []):
                out.append(
                    {
                        "type": ev.get("eventType") or ev["__typename"],
                        "step": ev.get("stepKey"),
                        "message": ev.get("message") or "",
                        "error": (ev.get("error") or {}).get("message") or "",
                    }
                )
            if not data.get("hasMore"):
                return out
            cursor = data["cursor"]

    # ------------------------------------------------------------------ backfills
    def launch_job_backfill(
        self,
        job_name: str,
        partition_names: list[str],
        *,
        asset_selection: list[str] | None = None,
        run_config: dict | None = None,
        title: str | None = None,
    ) -> str:
        """A job backfill: one run of ``job_name`` per partition, submitted by the daemon."""
        params: dict = {
            "selector": {
                "partitionSetName": f"{job_name}_partition_set",
                "repositorySelector": {
                    "repositoryLocationName": LOCATION_NAME,
                    "repositoryName": REPOSITORY_NAME,
                },
            },
            "partitionNames": partition_names,
        }
        if asset_selection:
            params["assetSelection"] = [{"path": [a]} for a in asset_selection]
        if run_config:
            params["runConfigData"] = run_config
        if title:
            params["title"] = title
        data = self.query(
            """
            mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
              __typename
              ... on LaunchBackfillSuccess { backfillId }
              ... on PythonError { message }
              ... on InvalidStepError { invalidStepKey }
              ... on InvalidOutputError { stepKey invalidOutputName }
              ... on UnauthorizedError { message }
            } }
            """,
            {"p": params},
        )["launchPartitionBackfill"]
        if data["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"backfill not launched: {data}")
        return data["backfillId"]

    def backfill(self, backfill_id: str) -> dict:
        data = self.query(
            """
            query($id: String!) { partitionBackfillOrError(backfillId: $id) {
              __typename
              ... on PartitionBackfill {
                status numPartitions startTime endTime error { message }
                runs(limit: 1000) { runId status tags { key value } startTime endTime }
              }
              ... on PythonError { message }
            } }
            """,
            {"id": backfill_id},
        )["partitionBackfillOrError"]
        if data["__typename"] != "PartitionBackfill":
            raise GraphQLError(str(data))
        return data

    def wait_for_backfill(self, backfill_id: str, deadline_s: float) -> dict:
        """Wait until the daemon has submitted every run of the backfill and they all finished.

        A job backfill makes one run per partition, except for assets with
        ``BackfillPolicy.single_run()`` (raw and clean events here): then one run covers the
        whole range."""
        t_end = time.monotonic() + deadline_s
        data: dict = {}
        while time.monotonic() < t_end:
            data = self.backfill(backfill_id)
            runs = data["runs"]
            if data["status"] in {"FAILED", "CANCELED"}:
                return data
            submitted = data["status"] in {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED"}
            if submitted and runs and all(r["status"] in FINISHED_RUN_STATES for r in runs):
                return data
            time.sleep(2.0)
        raise TimeoutError(
            f"backfill {backfill_id} not finished after {deadline_s}s: status {data.get('status')}, "
            f"runs {[r['status'] for r in data.get('runs', [])]}"
        )

    # ------------------------------------------------------------------ assets
    def asset_nodes(self) -> dict[str, dict]:
        """Every asset: ``{key: {"upstream", "downstream", "group", "partitioned"}}``."""
        data = self.query(
            """
            { assetNodes { assetKey { path } groupName isPartitioned
                dependencyKeys { path } dependedByKeys { path } } }
            """
        )
        return {
            "/".join(n["assetKey"]["path"]): {
                "upstream": sorted("/".join(k["path"]) for k in n["dependencyKeys"]),
                "downstream": sorted("/".join(k["path"]) for k in n["dependedByKeys"]),
                "group": n["groupName"],
                "partitioned": n["isPartitioned"],
            }
            for n in data["assetNodes"]
        }

    def latest_materialization(self, asset: str) -> dict | None:
        """``{"run_id", "partition", "metadata"}`` of an asset's latest materialization."""
        data = self.query(
            f"""
            query($key: AssetKeyInput!) {{ assetOrError(assetKey: $key) {{
              __typename
              ... on Asset {{ assetMaterializations(limit: 1) {{
                runId partition timestamp metadataEntries {{ {_METADATA_FIELDS} }}
              }} }}
            }} }}
            """,
            {"key": {"path": [asset]}},
        )["assetOrError"]
        mats = data.get("assetMaterializations") or []
        if not mats:
            return None
        m = mats[0]
        return {
            "run_id": m["runId"],
            "partition": m["partition"],
            "timestamp": m["timestamp"],
            "metadata": metadata_dict(m["metadataEntries"]),
        }

    def asset_checks(self, asset: str) -> dict[str, dict]:
        """Each check on an asset with its latest execution: ``{name: {"status", "passed",
        "run_id", "metadata"}}``."""
        data = self.query(
            """
            query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
              __typename
              ... on AssetNode { assetChecksOrError {
                __typename
                ... on AssetChecks { checks { name blocking } }
              } }
            } }
            """,
            {"key": {"path": [asset]}},
        )["assetNodeOrError"]
        names = [c["name"] for c in data["assetChecksOrError"].get("checks", [])]
        out = {}
        for name in names:
            execs = self.query(
                f"""
                query($key: AssetKeyInput!, $name: String!) {{
                  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 1) {{
                    runId status partition
                    evaluation {{ success metadataEntries {{ {_METADATA_FIELDS} }} }}
                  }}
                }}
                """,
                {"key": {"path": [asset]}, "name": name},
            )["assetCheckExecutions"]
            if not execs:
                out[name] = {"status": None, "passed": None, "run_id": None, "metadata": {}}
                continue
            e = execs[0]
            ev = e.get("evaluation") or {}
            out[name] = {
                "status": e["status"],
                "passed": ev.get("success"),
                "run_id": e["runId"],
                "metadata": metadata_dict(ev.get("metadataEntries") or []),
            }
        return out

    # ------------------------------------------------------------------ schedules / daemon
    def schedule(self, name: str) -> dict:
        data = self.query(
            """
            query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) {
              __typename
              ... on Schedule { name cronSchedule executionTimezone pipelineName
                defaultStatus scheduleState { status } }
              ... on PythonError { message }
            } }
            """,
            {"s": self._schedule_selector(name)},
        )["scheduleOrError"]
        if data["__typename"] != "Schedule":
            raise GraphQLError(str(data))
        return data

    def schedule_dry_run(self, name: str, timestamp: float) -> list[dict]:
        """Evaluate a schedule tick at ``timestamp`` (what the UI's "Test schedule" does)."""
        data = self.query(
            """
            mutation($s: ScheduleSelector!, $t: Float) { scheduleDryRun(selectorData: $s, timestamp: $t) {
              __typename
              ... on DryRunInstigationTick { evaluationResult {
                skipReason error { message }
                runRequests { runKey jobName tags { key value } }
              } }
              ... on PythonError { message }
            } }
            """,
            {"s": self._schedule_selector(name), "t": timestamp},
        )["scheduleDryRun"]
        if data["__typename"] != "DryRunInstigationTick":
            raise GraphQLError(str(data))
        result = data["evaluationResult"]
        if result.get("error"):
            raise GraphQLError(result["error"]["message"])
        return [
            {"job": r["jobName"], "tags": {t["key"]: t["value"] for t in r["tags"]}}
            for r in result["runRequests"] or []
        ]

    def daemon_statuses(self) -> dict[str, bool | None]:
        data = self.query(
            "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
        )
        return {
            d["daemonType"]: d["healthy"]
            for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]
            if d["required"]
        }

    @staticmethod
    def _schedule_selector(name: str) -> dict:
        return {
            "repositoryLocationName": LOCATION_NAME,
            "repositoryName": REPOSITORY_NAME,
            "scheduleName": name,
        }
