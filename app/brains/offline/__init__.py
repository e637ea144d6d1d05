"""The offline adapters: rules and lexicons per brain, no model, no network."""
