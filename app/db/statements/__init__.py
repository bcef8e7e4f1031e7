"""The SQL of the services, one module per resource: statements written once in SQLAlchemy Core
with named bind parameters, compiled once (`app.db.access.Statement`), and the decisions about
their shape (which index a listing walks). The services hold the rules; these hold the SQL."""
