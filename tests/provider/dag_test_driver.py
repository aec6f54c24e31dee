"""Run a DAG of the dags folder with ``dag.test()``: the subprocess the Airflow tests start.

Usage: ``python dag_test_driver.py DAG_ID CONF_JSON [CONF_JSON ...]``: one run per conf, in
order, in this one process (Airflow's start-up is paid once). Everything Airflow logs goes
to stdout/stderr; each run is framed by ``DAG_TEST_BEGIN <n>`` and a closing line
``DAG_TEST_RESULT {"run_id": ..., "state": ...}``. Exits 2 when the dags folder has import
errors. Running in a subprocess lets the tests read every byte a run logged (the secret-leak
check) and keeps Airflow's process-wide state out of the pytest process.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    dag_id, confs = sys.argv[1], [json.loads(arg) for arg in sys.argv[2:]]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dag = bag.get_dag(dag_id)
    if bag.import_errors or dag is None:
        print("DAG_TEST_IMPORT_ERRORS " + json.dumps(bag.import_errors or f"no dag {dag_id}"))
        return 2
    for number, conf in enumerate(confs):
        print(f"DAG_TEST_BEGIN {number}", flush=True)
        run = dag.test(run_conf=conf)
        result = {"run_id": run.run_id, "state": str(run.state)}
        print("DAG_TEST_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
