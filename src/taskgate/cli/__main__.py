from taskgate.cli import app

app()
