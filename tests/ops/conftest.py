"""Operations tests use the session broker of the root conftest."""
