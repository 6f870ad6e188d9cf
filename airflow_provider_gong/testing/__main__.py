"""Run the Gong stand-in: ``python -m airflow_provider_gong.testing --port 8765``."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from airflow_provider_gong.testing.standin import DEFAULT_USERS, DEFAULT_USERS_WITHOUT_CONSENT, GongStandIn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_gong.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--rate", type=float, default=3.0, help="calls/s (token bucket) before answering 429 (0: no limit)"
    )
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent with 429")
    parser.add_argument("--user", action="append", help="a Gong user with consent enabled (repeatable)")
    parser.add_argument(
        "--user-without-consent", action="append", help="a Gong user whose consent page is off (409)"
    )
    parser.add_argument("--access-key", default="standin-key")
    parser.add_argument("--access-key-secret", default="standin-secret-value")
    parser.add_argument("--access-token", default="standin-bearer-token")
    parser.add_argument("--limited-release", action="store_true", help="answer Meetings calls with 403")
    args = parser.parse_args(argv)

    standin = GongStandIn(
        host=args.host,
        port=args.port,
        access_key=args.access_key,
        access_key_secret=args.access_key_secret,
        access_token=args.access_token,
        users=args.user or DEFAULT_USERS,
        users_without_consent=args.user_without_consent or DEFAULT_USERS_WITHOUT_CONSENT,
        rate_limit_per_second=args.rate or None,
        retry_after=args.retry_after,
        limited_release=args.limited_release,
    ).start()
    print(f"Gong stand-in listening on {standin.url}", flush=True)
    print(f"AIRFLOW_CONN_GONG_DEFAULT='{standin.connection_json()}'", flush=True)
    print(f"or: airflow connections add gong_default --conn-json '{standin.connection_json()}'", flush=True)
    app = standin.connection(auth="oauth")
    del app["extra"]["refresh_token"]  # an OAuth app before its first authorisation: see oauth_setup
    print(f"OAuth app: airflow connections add gong_oauth --conn-json '{json.dumps(app)}'", flush=True)
    print("Admin: GET /_standin/meetings, POST /_standin/faults, POST /_standin/reset", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
