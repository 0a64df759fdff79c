from curation.cli import app

app(prog_name="curate")
