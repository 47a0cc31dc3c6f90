#!/usr/bin/env python3
"""A dynamic inventory as CMDBs print it."""
import json, sys
if sys.argv[1:] == ["--list"]:
    print(json.dumps({
        "kms_hosts": {"hosts": ["kms01", "kms02"], "vars": {"kms_port": 1688}, "children": ["hq"]},
        "hq": ["hq-dc01"],
        "branch_berlin": {"hosts": ["ber-kms01"], "vars": {"site": "branch-berlin"}},
        "_meta": {"hostvars": {"kms01": {"ansible_host": "198.18.0.21", "weight": 2.5},
                               "ber-kms01": {"owner": "Zoë"}}},
    }))
else:
    print("{}")
