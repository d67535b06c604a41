"""Who calls the user API and what they may do: Basic authentication with access keys
(:mod:`.authentication`), their short-lived cache (:mod:`.key_cache`), grants checked per path
(:mod:`.principal`) and the audit log (:mod:`.audit`)."""
