# kmsdeploy Windows runner, version 1 (Windows PowerShell 5.1).
#
# The bootstrap (kmsdeploy/providers/windows/bootstrap.py) reads this file and a JSON payload
# from stdin, checks this file's SHA-256 and calls it with the payload TEXT as its only argument.
# The payload (schemas/runner-payload.json) is a list of read/apply operations; the runner runs
# them in order and writes ONE JSON document (schemas/runner-result.json) to stdout.
#
# Rules this file keeps (tests/unit/test_runner_ps1.py checks them):
# - values from the payload are only ever parameter values or method arguments; nothing from the
#   payload becomes PowerShell source (no Invoke-Expression, no [scriptblock]::Create, no & $var);
# - every cmdlet used is on the test's allow-list, which cites the reference section it comes from;
# - the operation switch below has exactly one branch per operation of the payload schema.
# Reference sections (A.2, B.2, C.2, E.1 ...) are those of windows-kms-dns-dkm-scom.md.
param([string]$PayloadText)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

$RunnerName = 'kmsdeploy-runner/1'
$SppKey = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion\SoftwareProtectionPlatform'
$MarkerKey = 'HKLM:\SOFTWARE\kmsdeploy'
# ownership markers of management groups: one REG_SZ value per group, data = owner id (docs/windows.md)
$ScomMarkerKey = 'HKLM:\SOFTWARE\kmsdeploy\ScomManagementGroups'
$SppProviders = @('Microsoft-Windows-Security-SPP', 'Microsoft-Windows-Security-Licensing-SLC')
$Secrets = New-Object System.Collections.ArrayList

function Stop-Op {
    param([string]$Code, [string]$Message)
    $ex = New-Object System.Exception $Message
    $ex.Data['kmsdeploy_code'] = $Code
    throw $ex
}

function Get-Arg {
    param($Object, [string]$Name, $Default = $null)
    if ($null -eq $Object) { return $Default }
    $prop = $Object.PSObject.Properties[$Name]
    if ($null -eq $prop) { return $Default }
    return , $prop.Value
}

function Format-HResult {
    param($Value)
    return ('0x{0:X8}' -f ([int64]$Value -band 0xFFFFFFFF))
}

function Hide-Secrets {
    param([string]$Text)
    foreach ($s in $Secrets) {
        if ($s) { $Text = $Text.Replace([string]$s, '(sensitive)') }
    }
    return $Text
}

function Get-ErrorCode {
    param($ErrorRecord)
    $ex = $ErrorRecord.Exception
    if ($ex.Data.Contains('kmsdeploy_code')) { return [string]$ex.Data['kmsdeploy_code'] }
    # CIM failures of the SPP methods carry the HRESULT (A.6) in the CIM error instance.
    # UNCONFIRMED where exactly: try error_Code first, then the exception's HResult.
    $errorData = $ex.PSObject.Properties['ErrorData']
    if ($errorData -and $errorData.Value) {
        $codeProp = $errorData.Value.CimInstanceProperties['error_Code']
        if ($codeProp -and $codeProp.Value) { return (Format-HResult $codeProp.Value) }
    }
    if ($ex.HResult) { return (Format-HResult $ex.HResult) }
    return 'KMSDEPLOY_ERROR'
}

# ---------------------------------------------------------------- licensing (A.2, A.3)

function Get-LicensingService {
    return Get-CimInstance -ClassName SoftwareLicensingService
}

function Get-KeyedProducts {
    # Products with a key installed, as slmgr selects them (A.2).
    return @(Get-CimInstance -ClassName SoftwareLicensingProduct -Filter 'PartialProductKey IS NOT NULL')
}

function Invoke-Spp {
    param($Instance, [string]$Method, [hashtable]$Arguments)
    if ($null -eq $Arguments) { $Arguments = @{} }
    $r = Invoke-CimMethod -InputObject $Instance -MethodName $Method -Arguments $Arguments
    if ($r -and $r.ReturnValue -ne 0) {
        Stop-Op (Format-HResult $r.ReturnValue) ($Method + ' failed')
    }
}

function Set-RestartPending {
    if (-not (Test-Path -LiteralPath $MarkerKey)) { $null = New-Item -Path $MarkerKey -Force }
    $null = New-ItemProperty -LiteralPath $MarkerKey -Name 'SppsvcRestartPending' -PropertyType DWord -Value 1 -Force
}

function Read-Licensing {
    $svc = Get-LicensingService
    $products = New-Object System.Collections.ArrayList
    foreach ($p in (Get-KeyedProducts)) {
        [void]$products.Add([ordered]@{
            id = [string]$p.ID
            name = [string]$p.Name
            description = [string]$p.Description
            application_id = [string]$p.ApplicationID
            partial_key = [string]$p.PartialProductKey
            license_status = [int]$p.LicenseStatus
            grace_minutes = [int64]$p.GracePeriodRemaining
            is_kms_machine = [bool]($p.IsKeyManagementServiceMachine -eq 1)
        })
    }
    $publish = @()
    $item = Get-ItemProperty -LiteralPath $SppKey -Name 'DnsDomainPublishList' -ErrorAction SilentlyContinue
    if ($item) { $publish = @($item.DnsDomainPublishList) }
    $pending = $false
    $marker = Get-ItemProperty -LiteralPath $MarkerKey -Name 'SppsvcRestartPending' -ErrorAction SilentlyContinue
    if ($marker -and $marker.SppsvcRestartPending -eq 1) { $pending = $true }
    return [ordered]@{
        service = [ordered]@{
            is_kms_machine = [bool]($svc.IsKeyManagementServiceMachine -eq 1)
            current_count = [int64]$svc.KeyManagementServiceCurrentCount
            required_client_count = [int64]$svc.RequiredClientCount
            listening_port = [int64]$svc.KeyManagementServiceListeningPort
            dns_publishing = [bool]$svc.KeyManagementServiceDnsPublishing
            low_priority = [bool]$svc.KeyManagementServiceLowPriority
            host_caching = [bool]$svc.KeyManagementServiceHostCaching
            activation_interval = [int64]$svc.VLActivationInterval
            renewal_interval = [int64]$svc.VLRenewalInterval
            version = [string]$svc.Version
            # cumulative request counters (A.2)
            failed_requests = [int64]$svc.KeyManagementServiceFailedRequests
            total_requests = [int64]$svc.KeyManagementServiceTotalRequests
        }
        products = $products
        publish_list = $publish
        restart_pending = $pending
    }
}

function Install-ProductKey {
    param($A)
    $svc = Get-LicensingService
    Invoke-Spp $svc 'InstallProductKey' @{ ProductKey = [string]$A.key }
    $null = Invoke-CimMethod -InputObject $svc -MethodName 'RefreshLicenseStatus'
    Set-RestartPending
    return $null
}

function Invoke-Activation {
    param($A)
    $want = Get-Arg $A 'partial_key'
    $target = $null
    foreach ($p in (Get-KeyedProducts)) {
        $desc = [string]$p.Description
        # A KMS host key: VOLUME_KMS but not VOLUME_KMSCLIENT (A.2, slmgr IsKmsServer).
        if ($desc -like '*VOLUME_KMS*' -and $desc -notlike '*VOLUME_KMSCLIENT*') {
            if ($null -eq $want -or [string]$p.PartialProductKey -eq [string]$want) { $target = $p }
        }
    }
    if ($null -eq $target) { Stop-Op 'KMSDEPLOY_NO_KMS_PRODUCT' 'no product with a KMS host key is installed' }
    Invoke-Spp $target 'Activate' $null
    $null = Invoke-CimMethod -InputObject (Get-LicensingService) -MethodName 'RefreshLicenseStatus'
    return $null
}

function Set-LicensingSetting {
    param($A)
    $svc = Get-LicensingService
    # slmgr only applies host settings on a KMS machine (A.1); the methods error otherwise (A.2).
    if ($svc.IsKeyManagementServiceMachine -ne 1) {
        Stop-Op 'KMSDEPLOY_NOT_KMS_HOST' 'host settings can only be set on a KMS machine'
    }
    $value = $A.value
    switch -Exact ([string]$A.setting) {
        'listening_port' { Invoke-Spp $svc 'SetKeyManagementServiceListeningPort' @{ PortNumber = [uint32]$value } }
        'dns_publishing' { Invoke-Spp $svc 'DisableKeyManagementServiceDnsPublishing' @{ DisablePublishing = (-not [bool]$value) } }
        'low_priority' { Invoke-Spp $svc 'EnableKeyManagementServiceLowPriority' @{ EnableLowPriority = [bool]$value } }
        'host_caching' { Invoke-Spp $svc 'DisableKeyManagementServiceHostCaching' @{ DisableCaching = (-not [bool]$value) } }
        'activation_interval' { Invoke-Spp $svc 'SetVLActivationInterval' @{ ActivationInterval = [uint32]$value } }
        'renewal_interval' { Invoke-Spp $svc 'SetVLRenewalInterval' @{ RenewalInterval = [uint32]$value } }
        default { Stop-Op 'KMSDEPLOY_UNKNOWN_OP' ('unknown licensing setting: ' + [string]$A.setting) }
    }
    Set-RestartPending
    return $null
}

function Set-PublishList {
    param($A)
    $entries = @(Get-Arg $A 'entries' @())
    if ($entries.Count -eq 0) {
        Remove-ItemProperty -LiteralPath $SppKey -Name 'DnsDomainPublishList' -ErrorAction SilentlyContinue
    } else {
        $lines = [string[]]@($entries | ForEach-Object { [string]$_ })
        $null = New-ItemProperty -LiteralPath $SppKey -Name 'DnsDomainPublishList' -PropertyType MultiString -Value $lines -Force
    }
    Set-RestartPending
    return $null
}

function Restart-NamedService {
    param($A)
    # Only sppsvc: "restart the licensing service" after host settings (A.1, A.3).
    if ([string]$A.name -ne 'sppsvc') { Stop-Op 'KMSDEPLOY_UNKNOWN_OP' 'only sppsvc may be restarted' }
    Restart-Service -Name 'sppsvc' -Force
    Remove-ItemProperty -LiteralPath $MarkerKey -Name 'SppsvcRestartPending' -ErrorAction SilentlyContinue
    return $null
}

function Read-NamedService {
    param($A)
    # Only sppsvc (A.1); the name is compared as data, never interpolated.
    # sppsvc is trigger-started and querying SoftwareLicensingService starts it (inference):
    # the status is evidence, read together with event 12291.
    if ([string]$A.name -ne 'sppsvc') { Stop-Op 'KMSDEPLOY_UNKNOWN_OP' 'only sppsvc may be read' }
    $s = Get-Service -Name 'sppsvc' -ErrorAction Stop
    return [ordered]@{ name = 'sppsvc'; status = [string]$s.Status; start_type = [string]$s.StartType }
}

# ---------------------------------------------------------------- event log (A.4)

function ConvertTo-EventData {
    param($EventRecord)
    return [ordered]@{
        id = [int]$EventRecord.Id
        log = [string]$EventRecord.LogName
        time = $EventRecord.TimeCreated.ToUniversalTime().ToString('o')
        message = [string]$EventRecord.Message
        properties = @($EventRecord.Properties | ForEach-Object { [string]$_.Value })
    }
}

function Read-KmsEvents {
    param($A)
    $max = [int](Get-Arg $A 'max' 50)
    $ids = @(Get-Arg $A 'ids' @() | ForEach-Object { [int]$_ })
    $out = New-Object System.Collections.ArrayList
    # 12290 is in the 'Key Management Service' log; the others in Application (A.4).
    if ($ids -contains 12290) {
        foreach ($e in @(Get-WinEvent -FilterHashtable @{ LogName = 'Key Management Service'; Id = 12290 } -MaxEvents $max -ErrorAction SilentlyContinue)) {
            [void]$out.Add((ConvertTo-EventData $e))
        }
    }
    $appIds = @($ids | Where-Object { $_ -ne 12290 })
    if ($appIds.Count -gt 0) {
        $filter = @{ LogName = 'Application'; Id = $appIds; ProviderName = $SppProviders }
        foreach ($e in @(Get-WinEvent -FilterHashtable $filter -MaxEvents $max -ErrorAction SilentlyContinue)) {
            [void]$out.Add((ConvertTo-EventData $e))
        }
    }
    return [ordered]@{ events = $out }
}

# Characters of event JSON per Read-KmsActivations answer: a page ends early past this, so
# one answer stays far below Windows PowerShell 5.1's ~2 MB JSON limits (the lab model uses
# the same budget: kmsdeploy/lab/model/eventlog.py PAGE_BUDGET).
$ActivationPageBudget = 1000000

function Read-KmsActivations {
    param($A)
    # Only integers reach the XPath (cast to [long]/[int]): no payload value becomes source.
    $after = [long](Get-Arg $A 'after_record_id' 0)
    $max = [int](Get-Arg $A 'max' 20000)
    # 12290 lives in the 'Key Management Service' log (A.4); one more than asked tells "more".
    $xpath = '*[System[(EventID=12290) and (EventRecordID > ' + $after + ')]]'
    $out = New-Object System.Collections.ArrayList
    $size = 0
    $more = $false
    foreach ($e in @(Get-WinEvent -LogName 'Key Management Service' -FilterXPath $xpath -Oldest -MaxEvents ($max + 1) -ErrorAction SilentlyContinue)) {
        if ($out.Count -ge $max) { $more = $true; break }
        $props = @($e.Properties | ForEach-Object { [string]$_.Value })
        $message = $null
        # the message doubles the size: only when there are no properties (F.9 Info line)
        if ($props.Count -eq 0) { $message = [string]$e.Message }
        $size += 60
        foreach ($p in $props) { $size += $p.Length + 3 }
        if ($null -ne $message) { $size += $message.Length }
        if ($out.Count -gt 0 -and $size -gt $ActivationPageBudget) { $more = $true; break }
        [void]$out.Add([ordered]@{
            record_id = [long]$e.RecordId
            time = $e.TimeCreated.ToUniversalTime().ToString('o')
            properties = $props
            message = $message
        })
    }
    $oldest = @(Get-WinEvent -LogName 'Key Management Service' -Oldest -MaxEvents 1 -ErrorAction SilentlyContinue)
    $last = $after
    if ($out.Count -gt 0) { $last = $out[$out.Count - 1].record_id }
    $oldestId = $null
    if ($oldest.Count -gt 0) { $oldestId = [long]$oldest[0].RecordId }
    return [ordered]@{ events = $out; last_record_id = $last; more = $more; oldest_record_id = $oldestId }
}

# ---------------------------------------------------------------- firewall (C.1-C.3)

function Get-ExactRule {
    param([string]$Name)
    # -Name takes wildcards: escape them and keep exact matches only (C.3).
    $escaped = [System.Management.Automation.WildcardPattern]::Escape($Name)
    return @(Get-NetFirewallRule -Name $escaped -ErrorAction SilentlyContinue | Where-Object { $_.Name -eq $Name })
}

function ConvertTo-RuleData {
    param($Rule)
    $pf = $Rule | Get-NetFirewallPortFilter
    $af = $Rule | Get-NetFirewallAddressFilter
    $apf = $Rule | Get-NetFirewallApplicationFilter
    $sf = $Rule | Get-NetFirewallServiceFilter
    return [ordered]@{
        name = [string]$Rule.Name
        display_name = [string]$Rule.DisplayName
        group = [string]$Rule.Group
        description = [string]$Rule.Description
        enabled = ([string]$Rule.Enabled -eq 'True')
        direction = [string]$Rule.Direction
        action = [string]$Rule.Action
        profiles = @(([string]$Rule.Profile) -split ', ')
        protocol = [string]$pf.Protocol
        local_ports = @($pf.LocalPort | ForEach-Object { [string]$_ })
        remote_ports = @($pf.RemotePort | ForEach-Object { [string]$_ })
        local_addresses = @($af.LocalAddress | ForEach-Object { [string]$_ })
        remote_addresses = @($af.RemoteAddress | ForEach-Object { [string]$_ })
        program = [string]$apf.Program
        service = [string]$sf.Service
    }
}

function Read-FirewallRules {
    param($A)
    $seen = @{}
    $out = New-Object System.Collections.ArrayList
    foreach ($n in @(Get-Arg $A 'names' @())) {
        foreach ($r in (Get-ExactRule ([string]$n))) {
            if (-not $seen.ContainsKey($r.Name)) { $seen[$r.Name] = $true; [void]$out.Add((ConvertTo-RuleData $r)) }
        }
    }
    foreach ($g in @(Get-Arg $A 'groups' @())) {
        $escaped = [System.Management.Automation.WildcardPattern]::Escape([string]$g)
        foreach ($r in @(Get-NetFirewallRule -Group $escaped -ErrorAction SilentlyContinue | Where-Object { $_.Group -eq [string]$g })) {
            if (-not $seen.ContainsKey($r.Name)) { $seen[$r.Name] = $true; [void]$out.Add((ConvertTo-RuleData $r)) }
        }
    }
    return [ordered]@{ rules = $out }
}

function Get-RuleParameters {
    param($Properties, [bool]$ForUpdate)
    $params = @{}
    foreach ($prop in $Properties.PSObject.Properties) {
        $v = $prop.Value
        switch -Exact ($prop.Name) {
            'name' { $params['Name'] = [string]$v }
            'display_name' { if ($ForUpdate) { $params['NewDisplayName'] = [string]$v } else { $params['DisplayName'] = [string]$v } }
            'group' { if ($null -ne $v) { $params['Group'] = [string]$v } }
            'description' { if ($null -ne $v) { $params['Description'] = [string]$v } }
            'enabled' { if ([bool]$v) { $params['Enabled'] = 'True' } else { $params['Enabled'] = 'False' } }
            'direction' { $params['Direction'] = [string]$v }
            'action' { $params['Action'] = [string]$v }
            'protocol' { $params['Protocol'] = [string]$v }
            'local_ports' { $params['LocalPort'] = [string[]]@($v) }
            'remote_ports' { $params['RemotePort'] = [string[]]@($v) }
            'local_addresses' { $params['LocalAddress'] = [string[]]@($v) }
            'remote_addresses' { $params['RemoteAddress'] = [string[]]@($v) }
            'profiles' { $params['Profile'] = [string[]]@($v) }
            'program' { if ($null -ne $v) { $params['Program'] = [string]$v } }
            'service' { if ($null -ne $v) { $params['Service'] = [string]$v } }
            default { Stop-Op 'KMSDEPLOY_UNKNOWN_OP' ('unknown firewall property: ' + $prop.Name) }
        }
    }
    return $params
}

function New-Rule {
    param($A)
    $rule = $A.rule
    # Never duplicate a rule (C.1: built-in rules are matched by Name).
    if ((Get-ExactRule ([string]$rule.name)).Count -gt 0) { Stop-Op 'KMSDEPLOY_EXISTS' 'a firewall rule with this Name exists' }
    $params = Get-RuleParameters $rule $false
    $null = New-NetFirewallRule @params
    return $null
}

function Set-Rule {
    param($A)
    $rules = Get-ExactRule ([string]$A.name)
    if ($rules.Count -eq 0) { Stop-Op 'KMSDEPLOY_NOT_FOUND' 'no firewall rule with this Name' }
    $params = Get-RuleParameters $A.properties $true
    $rules[0] | Set-NetFirewallRule @params
    return $null
}

function Remove-Rule {
    param($A)
    $rules = Get-ExactRule ([string]$A.name)
    if ($rules.Count -gt 0) { $rules[0] | Remove-NetFirewallRule }
    return $null
}

# ---------------------------------------------------------------- DNS server (B.2, B.3)

function Assert-DnsModule {
    if (-not (Get-Module -ListAvailable -Name DnsServer)) { Stop-Op 'KMSDEPLOY_NO_MODULE' 'the DnsServer module is not installed (not a DNS server)' }
}

function ConvertTo-DnsData {
    param([string]$Zone, $Record)
    $d = $Record.RecordData
    $data = [ordered]@{}
    switch -Exact ([string]$Record.RecordType) {
        'SRV' { $data = [ordered]@{ priority = [int]$d.Priority; weight = [int]$d.Weight; port = [int]$d.Port; target = [string]$d.DomainName } }
        'A' { $data = [ordered]@{ address = [string]$d.IPv4Address } }
        'AAAA' { $data = [ordered]@{ address = [string]$d.IPv6Address } }
        'CNAME' { $data = [ordered]@{ target = [string]$d.HostNameAlias } }
        'TXT' { $data = [ordered]@{ text = @([string]$d.DescriptiveText) } }
    }
    return [ordered]@{
        zone = $Zone
        name = [string]$Record.HostName
        type = [string]$Record.RecordType
        ttl = [int64]$Record.TimeToLive.TotalSeconds
        data = $data
    }
}

function Get-DnsRecords {
    param([string]$Zone, [string]$Name, [string]$Type)
    return @(Get-DnsServerResourceRecord -ZoneName $Zone -Name $Name -RRType $Type -ErrorAction SilentlyContinue |
        Where-Object { $_.HostName -eq $Name })
}

function Test-SameData {
    param($Record, $Want)
    $have = (ConvertTo-DnsData '' $Record).data
    foreach ($prop in $Want.PSObject.Properties) {
        $h = $have[$prop.Name]
        if ($prop.Name -eq 'text') {
            if ((@($h) -join "`n") -ne (@($prop.Value) -join "`n")) { return $false }
        } elseif ([string]$h -ne [string]$prop.Value) { return $false }
    }
    return $true
}

function Find-DnsRecord {
    param($R)
    foreach ($rec in (Get-DnsRecords ([string]$R.zone) ([string]$R.name) ([string]$R.type))) {
        if (Test-SameData $rec $R.data) { return $rec }
    }
    return $null
}

function Read-DnsRecords {
    param($A)
    Assert-DnsModule
    $zone = [string]$A.zone
    $z = Get-DnsServerZone -Name $zone -ErrorAction SilentlyContinue
    if ($null -eq $z) { return [ordered]@{ zone_exists = $false; records = @() } }
    $out = New-Object System.Collections.ArrayList
    foreach ($rec in (Get-DnsRecords $zone ([string]$A.name) ([string]$A.type))) {
        [void]$out.Add((ConvertTo-DnsData $zone $rec))
    }
    return [ordered]@{ zone_exists = $true; records = $out }
}

function Add-DnsRecord {
    param($A)
    Assert-DnsModule
    $r = $A.record
    $d = $r.data
    $ttl = [TimeSpan]::FromSeconds([double](Get-Arg $r 'ttl' 3600))
    $common = @{ ZoneName = [string]$r.zone; Name = [string]$r.name; TimeToLive = $ttl }
    # TTL is always passed, so it is honoured on creation (B.2; Ansible #356).
    switch -Exact ([string]$r.type) {
        'SRV' { Add-DnsServerResourceRecord @common -Srv -DomainName ([string]$d.target) -Priority ([uint16]$d.priority) -Weight ([uint16]$d.weight) -Port ([uint16]$d.port) }
        # Splatted: tree-sitter-powershell mis-tokenises parameter names with digits (-IPv4Address).
        'A' { $common['IPv4Address'] = [string]$d.address; Add-DnsServerResourceRecord @common -A }
        'AAAA' { $common['IPv6Address'] = [string]$d.address; Add-DnsServerResourceRecord @common -AAAA }
        'CNAME' { Add-DnsServerResourceRecord @common -CName -HostNameAlias ([string]$d.target) }
        'TXT' { Add-DnsServerResourceRecord @common -Txt -DescriptiveText ((@($d.text) | ForEach-Object { [string]$_ }) -join '') }
    }
    return $null
}

function Test-OwnerMarker {
    param([string]$Text, [string]$Owner)
    # heritage=kmsdeploy,owner=<id>,type=<TYPE> (docs/dns.md "Ownership marker"), field by field;
    # the owner id is compared case-sensitively, as the provider does
    $fields = @{}
    foreach ($part in ($Text -split ',')) {
        $kv = $part -split '=', 2
        if ($kv.Count -eq 2) { $fields[$kv[0]] = $kv[1] }
    }
    return ([string]$fields['heritage'] -eq 'kmsdeploy' -and [string]$fields['owner'] -ceq $Owner)
}

function Read-OwnedDnsSets {
    param($A)
    Assert-DnsModule
    $zone = [string]$A.zone
    $owner = [string]$A.owner
    $z = Get-DnsServerZone -Name $zone -ErrorAction SilentlyContinue
    if ($null -eq $z) { return [ordered]@{ zone_exists = $false; sets = @() } }
    $sets = New-Object System.Collections.ArrayList
    $seen = @{}
    $types = @('A', 'AAAA', 'CNAME', 'SRV', 'TXT')
    # every TXT record of the zone (no -Name); markers are _kmsdeploy-<type>.<name> (docs/dns.md)
    foreach ($m in @(Get-DnsServerResourceRecord -ZoneName $zone -RRType 'TXT' -ErrorAction SilentlyContinue)) {
        $hostName = [string]$m.HostName
        $dot = $hostName.IndexOf('.')
        $label = $hostName
        $rest = '@'
        if ($dot -ge 0) { $label = $hostName.Substring(0, $dot); $rest = $hostName.Substring($dot + 1) }
        if (-not $label.StartsWith('_kmsdeploy-', [System.StringComparison]::OrdinalIgnoreCase)) { continue }
        $type = $label.Substring(11).ToUpperInvariant()
        if ($types -notcontains $type) { continue }
        if (-not (Test-OwnerMarker ([string]$m.RecordData.DescriptiveText) $owner)) { continue }
        $key = ($rest + '/' + $type).ToLowerInvariant()
        if ($seen.ContainsKey($key)) { continue }
        $seen[$key] = $true
        $texts = New-Object System.Collections.ArrayList
        foreach ($t in (Get-DnsRecords $zone $hostName 'TXT')) { [void]$texts.Add([string]$t.RecordData.DescriptiveText) }
        $records = New-Object System.Collections.ArrayList
        foreach ($rec in (Get-DnsRecords $zone $rest $type)) { [void]$records.Add((ConvertTo-DnsData $zone $rec)) }
        [void]$sets.Add([ordered]@{ name = $rest; type = $type; marker = $texts; records = $records })
    }
    return [ordered]@{ zone_exists = $true; sets = $sets }
}

function Set-DnsRecord {
    param($A)
    Assert-DnsModule
    $old = Find-DnsRecord $A.old
    if ($null -eq $old) { Stop-Op 'KMSDEPLOY_NOT_FOUND' 'the DNS record to change was not found' }
    # Clone, change, Set-DnsServerResourceRecord -OldInputObject/-NewInputObject (B.2, B.3).
    $new = [ciminstance]::new($old)
    $want = $A.new
    $new.TimeToLive = [TimeSpan]::FromSeconds([double](Get-Arg $want 'ttl' 3600))
    if ([string]$want.type -eq 'SRV') {
        $new.RecordData.Priority = [uint16]$want.data.priority
        $new.RecordData.Weight = [uint16]$want.data.weight
    }
    $null = Set-DnsServerResourceRecord -ZoneName ([string]$want.zone) -OldInputObject $old -NewInputObject $new
    return $null
}

function Remove-DnsRecord {
    param($A)
    Assert-DnsModule
    $rec = Find-DnsRecord $A.record
    if ($null -ne $rec) { $rec | Remove-DnsServerResourceRecord -ZoneName ([string]$A.record.zone) -Force }
    return $null
}

# ---------------------------------------------------------------- SCOM agent (E.1-E.3)

function Get-ScomGroupOwner {
    param([string]$Name)
    # kmsdeploy's marker of a management group it owns (the agent's own configuration has no
    # place for one, E.2): a REG_SZ value named after the group holding the owner id
    $item = Get-ItemProperty -LiteralPath $ScomMarkerKey -Name $Name -ErrorAction SilentlyContinue
    if ($null -eq $item) { return $null }
    $prop = $item.PSObject.Properties[$Name]
    if ($null -eq $prop) { return $null }
    return [string]$prop.Value
}

function Set-ScomGroupOwner {
    param([string]$Name, [string]$Owner)
    if (-not (Test-Path -LiteralPath $ScomMarkerKey)) { $null = New-Item -Path $ScomMarkerKey -Force }
    $null = New-ItemProperty -LiteralPath $ScomMarkerKey -Name $Name -PropertyType String -Value $Owner -Force
}

function Clear-ScomGroupOwner {
    param([string]$Name)
    Remove-ItemProperty -LiteralPath $ScomMarkerKey -Name $Name -ErrorAction SilentlyContinue
}

function Get-AgentConfig {
    if ($null -eq (Get-Service -Name 'HealthService' -ErrorAction SilentlyContinue)) { return $null }
    return New-Object -ComObject 'AgentConfigManager.MgmtSvcCfg'
}

function Read-ScomAgent {
    $cfg = Get-AgentConfig
    $groups = New-Object System.Collections.ArrayList
    if ($null -eq $cfg) { return [ordered]@{ installed = $false; management_groups = $groups } }
    foreach ($g in @($cfg.GetManagementGroups())) {
        [void]$groups.Add([ordered]@{
            name = [string]$g.managementGroupName
            server = [string]$g.ManagementServer
            port = [int]$g.managementServerPort
            from_ad = [bool]$g.IsManagementGroupFromActiveDirectory
            action_account = [string]$g.ActionAccount
            owner = (Get-ScomGroupOwner ([string]$g.managementGroupName))
        })
    }
    return [ordered]@{ installed = $true; management_groups = $groups }
}

function Format-MsiProperty {
    param([string]$Name, [string]$Value)
    # MSI command-line quoting: the value in double quotes, embedded quotes doubled.
    return ($Name + '="' + $Value.Replace('"', '""') + '"')
}

function Invoke-Msiexec {
    param([string[]]$Arguments)
    $msiexec = Join-Path $env:SystemRoot 'System32\msiexec.exe'
    $p = Start-Process -FilePath $msiexec -ArgumentList $Arguments -Wait -PassThru -WindowStyle Hidden
    # 0 = success, 3010 = success, reboot required.
    if ($p.ExitCode -ne 0 -and $p.ExitCode -ne 3010) { Stop-Op 'KMSDEPLOY_MSI' ('msiexec exited with ' + $p.ExitCode) }
}

function Get-QuotedMsiPath {
    param([string]$Path)
    # msiexec's package argument in double quotes. A Windows path cannot hold a double quote;
    # refusing one keeps this quoting sound (no second argument smuggled into msiexec).
    if ($Path.Contains('"')) { Stop-Op 'KMSDEPLOY_MSI' 'msi_path must not contain a double quote' }
    return ('"' + $Path + '"')
}

function Install-ScomAgent {
    param($A)
    $package = Get-QuotedMsiPath ([string]$A.msi_path)
    if (-not (Test-Path -LiteralPath ([string]$A.msi_path))) { Stop-Op 'KMSDEPLOY_MSI' 'MOMAgent.msi not found at msi_path' }
    $argv = New-Object System.Collections.ArrayList
    foreach ($x in @('/i', $package, '/qn', '/norestart',
            'USE_SETTINGS_FROM_AD=0', 'USE_MANUALLY_SPECIFIED_SETTINGS=1',
            (Format-MsiProperty 'MANAGEMENT_GROUP' ([string]$A.management_group)),
            (Format-MsiProperty 'MANAGEMENT_SERVER_DNS' ([string]$A.management_server)),
            (Format-MsiProperty 'SECURE_PORT' ([string]$A.port)),
            'AcceptEndUserLicenseAgreement=1')) { [void]$argv.Add($x) }
    $user = Get-Arg $A 'action_user'
    if ($user) {
        [void]$argv.Add('ACTIONS_USE_COMPUTER_ACCOUNT=0')
        [void]$argv.Add((Format-MsiProperty 'ACTIONSUSER' ([string]$user)))
        [void]$argv.Add((Format-MsiProperty 'ACTIONSDOMAIN' ([string](Get-Arg $A 'action_domain' ''))))
        [void]$argv.Add((Format-MsiProperty 'ACTIONSPASSWORD' ([string](Get-Arg $A 'action_password' ''))))
    } else {
        [void]$argv.Add('ACTIONS_USE_COMPUTER_ACCOUNT=1')
    }
    Invoke-Msiexec ([string[]]$argv)
    $owner = Get-Arg $A 'owner'
    if ($owner) { Set-ScomGroupOwner ([string]$A.management_group) ([string]$owner) }
    return $null
}

function Uninstall-ScomAgent {
    param($A)
    $names = New-Object System.Collections.ArrayList
    $cfg = Get-AgentConfig
    if ($null -ne $cfg) { foreach ($g in @($cfg.GetManagementGroups())) { [void]$names.Add([string]$g.managementGroupName) } }
    Invoke-Msiexec @('/x', (Get-QuotedMsiPath ([string]$A.msi_path)), '/qn', '/norestart')
    # the groups are gone with the agent: so are their markers (only after msiexec succeeded)
    foreach ($n in $names) { Clear-ScomGroupOwner $n }
    return $null
}

function Edit-ManagementGroup {
    param([string]$Action, $A)
    $cfg = Get-AgentConfig
    if ($null -eq $cfg) { Stop-Op 'KMSDEPLOY_NOT_FOUND' 'the SCOM agent is not installed' }
    switch -Exact ($Action) {
        'add' {
            $cfg.AddManagementGroup([string]$A.name, [string]$A.server, [int]$A.port)
            $owner = Get-Arg $A 'owner'
            if ($owner) { Set-ScomGroupOwner ([string]$A.name) ([string]$owner) }
        }
        'remove' { $cfg.RemoveManagementGroup([string]$A.name); Clear-ScomGroupOwner ([string]$A.name) }
        'mark' { Set-ScomGroupOwner ([string]$A.name) ([string]$A.owner) }
        'reload' { $cfg.ReloadConfiguration() }
    }
    return $null
}

function Connect-ManagementGroup {
    param([string]$Server)
    # Primary/failover are set from the management-group side (E.3).
    if (-not (Get-Module -ListAvailable -Name OperationsManager)) { Stop-Op 'KMSDEPLOY_NO_MODULE' 'the OperationsManager module is not installed' }
    Import-Module -Name OperationsManager
    $null = New-SCOMManagementGroupConnection -ComputerName $Server
}

function Get-ScomAgentObject {
    param([string]$Fqdn)
    $agents = @(Get-SCOMAgent -DNSHostName $Fqdn | Where-Object { $_.DNSHostName -eq $Fqdn })
    if ($agents.Count -eq 0) { Stop-Op 'KMSDEPLOY_NOT_FOUND' 'the agent is not known to the management group (not approved yet?)' }
    return $agents[0]
}

function Get-ManagementServerObject {
    param([string]$Name)
    $ms = @(Get-SCOMManagementServer -Name $Name | Where-Object { $_.DisplayName -eq $Name -or $_.PrincipalName -eq $Name })
    if ($ms.Count -eq 0) { Stop-Op 'KMSDEPLOY_NOT_FOUND' 'management server not found' }
    return $ms[0]
}

function Read-ScomParents {
    param($A)
    if (-not (Get-Module -ListAvailable -Name OperationsManager)) { return [ordered]@{ available = $false; primary = $null; failover = @() } }
    Connect-ManagementGroup ([string]$A.management_server)
    $agent = Get-ScomAgentObject ([string]$A.agent)
    # UNCONFIRMED (E.3 documents only the setter): the agent object's primary/failover getters.
    $primary = $agent.GetPrimaryManagementServer()
    $failover = @($agent.GetFailoverManagementServers() | ForEach-Object { [string]$_.PrincipalName })
    return [ordered]@{ available = $true; primary = [string]$primary.PrincipalName; failover = $failover }
}

function Set-ScomPrimary {
    param($A)
    Connect-ManagementGroup ([string]$A.management_server)
    $agent = Get-ScomAgentObject ([string]$A.agent)
    $ms = Get-ManagementServerObject ([string]$A.primary)
    Set-SCOMParentManagementServer -Agent $agent -PrimaryServer $ms
    return $null
}

function Set-ScomFailover {
    param($A)
    Connect-ManagementGroup ([string]$A.management_server)
    $agent = Get-ScomAgentObject ([string]$A.agent)
    $names = @(Get-Arg $A 'failover' @())
    if ($names.Count -eq 0) {
        Set-SCOMParentManagementServer -Agent $agent -FailoverServer $null
    } else {
        $servers = @($names | ForEach-Object { Get-ManagementServerObject ([string]$_) })
        Set-SCOMParentManagementServer -Agent $agent -FailoverServer $servers
    }
    return $null
}

# ---------------------------------------------------------------- preflight (docs/preflight.md)

function Get-WsmanValue {
    param([string]$Path)
    # WSMan:\localhost needs an elevated account; the caller records why it failed
    return [string](Get-Item -LiteralPath $Path).Value
}

function Read-Preflight {
    param($A)
    $ps = [ordered]@{ edition = [string]$PSVersionTable['PSEdition']; version = [string]$PSVersionTable['PSVersion'];
        clr = [string]$PSVersionTable['CLRVersion'] }
    $policies = [ordered]@{ effective = [string](Get-ExecutionPolicy) }
    foreach ($p in @(Get-ExecutionPolicy -List)) { $policies[[string]$p.Scope] = [string]$p.ExecutionPolicy }
    $modules = [ordered]@{}
    foreach ($m in @(Get-Arg $A 'modules' @())) {
        $modules[[string]$m] = [bool](Get-Module -ListAvailable -Name ([string]$m))
    }
    $lic = $null
    if ([bool](Get-Arg $A 'licensing' $false)) {
        $lic = [ordered]@{ ok = $true; error = $null }
        try { [void](Get-LicensingService) } catch { $lic.ok = $false; $lic.error = [string]$_.Exception.Message }
    }
    $scom = $null
    if ([bool](Get-Arg $A 'scom' $false)) {
        $scom = [ordered]@{ installed = $false; com_object = $false; error = $null }
        if ($null -ne (Get-Service -Name 'HealthService' -ErrorAction SilentlyContinue)) {
            $scom.installed = $true
            try { [void](New-Object -ComObject 'AgentConfigManager.MgmtSvcCfg'); $scom.com_object = $true }
            catch { $scom.error = [string]$_.Exception.Message }
        }
    }
    $winrm = [ordered]@{ max_envelope_kb = $null; max_timeout_ms = $null; max_memory_per_shell_mb = $null; error = $null }
    try {
        $winrm.max_envelope_kb = [int64](Get-WsmanValue 'WSMan:\localhost\MaxEnvelopeSizekb')
        $winrm.max_timeout_ms = [int64](Get-WsmanValue 'WSMan:\localhost\MaxTimeoutms')
        $winrm.max_memory_per_shell_mb = [int64](Get-WsmanValue 'WSMan:\localhost\Shell\MaxMemoryPerShellMB')
    } catch { $winrm.error = [string]$_.Exception.Message }
    $identity = [ordered]@{ name = $null; admin = $null; groups = (New-Object System.Collections.ArrayList); error = $null }
    try {
        $id = [Security.Principal.WindowsIdentity]::GetCurrent()
        $identity.name = [string]$id.Name
        $principal = New-Object -TypeName Security.Principal.WindowsPrincipal -ArgumentList $id
        $identity.admin = [bool]$principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
        foreach ($g in @($id.Groups)) {
            $gname = [string]$g.Value
            try { $gname = [string]$g.Translate([Security.Principal.NTAccount]).Value } catch { $gname = [string]$g.Value }
            [void]$identity.groups.Add($gname)
        }
    } catch { $identity.error = [string]$_.Exception.Message }
    return [ordered]@{
        powershell = $ps
        language_mode = [string]$ExecutionContext.SessionState.LanguageMode
        execution_policy = $policies
        modules = $modules
        licensing = $lic
        scom = $scom
        winrm = $winrm
        identity = $identity
        clock_utc = [DateTime]::UtcNow.ToString('o')
    }
}

# ---------------------------------------------------------------- dispatch

function Invoke-Op {
    param($Op)
    $a = Get-Arg $Op 'args'
    switch -Exact ([string]$Op.op) {
        'licensing.read' { return (Read-Licensing) }
        'eventlog.read' { return (Read-KmsEvents $a) }
        'eventlog.read_activations' { return (Read-KmsActivations $a) }
        'firewall.read' { return (Read-FirewallRules $a) }
        'dns.read' { return (Read-DnsRecords $a) }
        'dns.list_owned' { return (Read-OwnedDnsSets $a) }
        'scom.read' { return (Read-ScomAgent) }
        'scom.read_parents' { return (Read-ScomParents $a) }
        'licensing.install_key' { return (Install-ProductKey $a) }
        'licensing.activate' { return (Invoke-Activation $a) }
        'licensing.set' { return (Set-LicensingSetting $a) }
        'licensing.set_publish_list' { return (Set-PublishList $a) }
        'service.restart' { return (Restart-NamedService $a) }
        'service.read' { return (Read-NamedService $a) }
        'system.preflight' { return (Read-Preflight $a) }
        'firewall.create' { return (New-Rule $a) }
        'firewall.set' { return (Set-Rule $a) }
        'firewall.remove' { return (Remove-Rule $a) }
        'dns.add' { return (Add-DnsRecord $a) }
        'dns.set' { return (Set-DnsRecord $a) }
        'dns.remove' { return (Remove-DnsRecord $a) }
        'scom.install' { return (Install-ScomAgent $a) }
        'scom.uninstall' { return (Uninstall-ScomAgent $a) }
        'scom.add_group' { return (Edit-ManagementGroup 'add' $a) }
        'scom.remove_group' { return (Edit-ManagementGroup 'remove' $a) }
        'scom.reload' { return (Edit-ManagementGroup 'reload' $a) }
        'scom.mark_group' { return (Edit-ManagementGroup 'mark' $a) }
        'scom.set_primary' { return (Set-ScomPrimary $a) }
        'scom.set_failover' { return (Set-ScomFailover $a) }
        default { Stop-Op 'KMSDEPLOY_UNKNOWN_OP' ('unknown operation: ' + [string]$Op.op) }
    }
}

function Write-Document {
    param($Document)
    [Console]::Out.Write((ConvertTo-Json -InputObject $Document -Depth 12 -Compress))
}

$results = New-Object System.Collections.ArrayList
try {
    # Windows PowerShell 5.1 refuses JSON over ~2 MB here; the provider splits payloads.
    $payload = ConvertFrom-Json -InputObject $PayloadText
    if ($payload.version -ne 1) { Stop-Op 'KMSDEPLOY_PAYLOAD' ('unsupported payload version ' + [string]$payload.version) }
} catch {
    Write-Document ([ordered]@{ version = 1; runner = $RunnerName; ok = $false; results = $results;
        error = [ordered]@{ code = 'KMSDEPLOY_PAYLOAD'; message = [string]$_.Exception.Message } })
    return
}

$ops = @($payload.ops)
foreach ($o in $ops) {
    $oa = Get-Arg $o 'args'
    foreach ($secretName in @('key', 'action_password')) {
        $sv = Get-Arg $oa $secretName
        if ($sv) { [void]$Secrets.Add([string]$sv) }
    }
}

$stopOnError = [bool](Get-Arg $payload 'stop_on_error' $true)
$failed = $false
foreach ($o in $ops) {
    $entry = [ordered]@{ id = [string]$o.id; op = [string]$o.op; status = 'ok'; data = $null }
    if ($failed -and $stopOnError) {
        $entry.status = 'skipped'
        $entry['error'] = [ordered]@{ code = 'KMSDEPLOY_SKIPPED'; message = 'not run: an earlier operation failed' }
    } else {
        try {
            $entry.data = Invoke-Op $o
        } catch {
            $failed = $true
            $entry.status = 'failed'
            $entry['error'] = [ordered]@{ code = (Get-ErrorCode $_); message = (Hide-Secrets ([string]$_.Exception.Message)) }
        }
    }
    [void]$results.Add($entry)
}
Write-Document ([ordered]@{ version = 1; runner = $RunnerName; ok = (-not $failed); results = $results })
