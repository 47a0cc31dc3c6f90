"""``kmsdeploy preflight``: one read-only round trip per target checking every prerequisite
the plan relies on. Pure checks (:mod:`.checks`) over facts collected per target type
(:mod:`.windows`, :mod:`.dns`), rendered by :mod:`.render`; the verb is :mod:`.command`."""
