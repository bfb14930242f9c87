# Fixtures shared by the functional and e2e suites (they import nothing heavy at load time).
pytest_plugins = ["tests.functional.driver_env"]
