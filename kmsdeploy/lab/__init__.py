"""The lab: a local WinRM endpoint (``winrm_server``) and a model of the Windows services behind it."""
