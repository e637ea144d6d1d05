"""Who is asking: bearer-token verification (JWKS) and signed image URLs.

An edge concern: `app/deps.py` turns a request into a plain `Caller` for the agents; agents
and stores never see a token, a header or a request.
"""
