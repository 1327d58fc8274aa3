from mailprefs import create_app
app = create_app()
