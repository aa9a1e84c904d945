"""Local stand-ins for the chat platforms, speaking their real wire protocols over real
sockets: a Bot API server (fake_telegram) and a Slack (fake_slack, Web API, signed
requests, Socket Mode). Shared by the tests and the benchmarks; not part of the installed
package (the sandbox helpdesk, a user-facing feature, is: bridge/sandbox.py)."""
