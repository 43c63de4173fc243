"""Security tests run against real servers on 127.0.0.1 and the session broker of the root
conftest."""
