"""The live fuzz tests use the session broker of the root conftest."""
