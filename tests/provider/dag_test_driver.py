"""Run one DAG of the dags folder with ``dag.test()``: the subprocess the Airflow tests start.

Usage: ``python dag_test_driver.py DAG_ID CONF_JSON``. Prints the task logs (everything
Airflow writes) and, last, one line ``DAG_TEST_RESULT {"run_id": ..., "state": ...}``; exits
2 when the dags folder has import errors. Running in a subprocess lets the tests read every
byte the run logged (the secret-leak check) and keeps Airflow's process-wide state out of
the pytest process.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    dag_id, conf = sys.argv[1], json.loads(sys.argv[2])
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        print("DAG_TEST_IMPORT_ERRORS " + json.dumps(bag.import_errors))
        return 2
    dag = bag.get_dag(dag_id)
    if dag is None:
        print(f"DAG_TEST_IMPORT_ERRORS no dag {dag_id!r}")
        return 2
    run = dag.test(run_conf=conf)
    print("DAG_TEST_RESULT " + json.dumps({"run_id": run.run_id, "state": str(run.state)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
