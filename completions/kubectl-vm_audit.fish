complete -c kubectl-vm_audit -s f -l filename -d 'Read manifests instead of the cluster: a file, a directory (recursively), or - for stdin. Repeatable. YAML or JSON, multi-document, `kind: List`' -r -F
complete -c kubectl-vm_audit -l kubeconfig -d 'Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config)' -r -F
complete -c kubectl-vm_audit -l context -d 'The kubeconfig context to use' -r
complete -c kubectl-vm_audit -l cluster -d 'The name of the kubeconfig cluster to use' -r
complete -c kubectl-vm_audit -l user -d 'The name of the kubeconfig user to use' -r
complete -c kubectl-vm_audit -s s -l server -d 'The address and port of the Kubernetes API server' -r
complete -c kubectl-vm_audit -l token -d 'Bearer token for authentication to the API server' -r
complete -c kubectl-vm_audit -l certificate-authority -d 'Path to a cert file for the certificate authority' -r -F
complete -c kubectl-vm_audit -l tls-server-name -d 'Server name to use for server certificate validation. If it is not provided, the hostname used to contact the server is used' -r
complete -c kubectl-vm_audit -l insecure-skip-tls-verify -d 'If true, the server\'s certificate will not be checked for validity. This will make your HTTPS connections insecure' -r -f -a "true\t''
false\t''"
complete -c kubectl-vm_audit -l as -d 'Username to impersonate for the operation. User could be a regular user or a service account in a namespace' -r
complete -c kubectl-vm_audit -l as-group -d 'Group to impersonate for the operation, this flag can be repeated to specify multiple groups' -r
complete -c kubectl-vm_audit -l request-timeout -d 'The length of time to wait before giving up on a single server request. Non-zero values should contain a corresponding time unit (e.g. 1s, 2m, 3h). A value of zero means don\'t timeout requests' -r
complete -c kubectl-vm_audit -s n -l namespace -d 'Namespace to look in (default: the context\'s namespace)' -r
complete -c kubectl-vm_audit -s l -l selector -d 'Only audit VMs, VMIs, replica sets and pools with these labels (e.g. app=web,tier!=dev)' -r
complete -c kubectl-vm_audit -s o -l output -d 'Output format' -r -f -a "table\t'Findings grouped by object, for people'
wide\t'The table with category and fix hint columns, and suppressed findings'
json\t'The `vm-audit/v1` AuditReport, for scripts'
yaml\t'The same report as YAML'
sarif\t'SARIF 2.1.0, for code-scanning tools'
junit\t'JUnit XML, one test case per object, for CI dashboards'"
complete -c kubectl-vm_audit -l fail-on -d 'Exit 1 when a finding is at least this severe' -r -f -a "info\t''
warning\t''
error\t''"
complete -c kubectl-vm_audit -l max-migration-time -d 'Flag VMs whose migration KubeVirt lets run longer than this (e.g. 30m, 1h): their memory times completionTimeoutPerGiB, from the KubeVirt CR or the MigrationPolicy that selects them (rule migration-timeout-exceeds-limit). Off by default' -r
complete -c kubectl-vm_audit -l explain -d 'Explain one rule: what it checks, why it matters, how to fix it' -r
complete -c kubectl-vm_audit -s v -l v -d 'Number for the log level verbosity, as kubectl\'s -v=N: 2 info, 4 debug, 6 trace (-v, -vv, -vvv for short); logs go to stderr' -r
complete -c kubectl-vm_audit -l audit-duplicates -d 'With -f: an object given more than once (same kind, namespace and name, in two files say) is audited once per copy, each shown with its file and line, instead of being an input error. Each copy is audited beside the same-numbered copy of every other object given as often (the first copy of the rest)'
complete -c kubectl-vm_audit -s A -l all-namespaces -d 'Look in every namespace'
complete -c kubectl-vm_audit -l list-rules -d 'List every rule with its id, severity and category'
complete -c kubectl-vm_audit -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kubectl-vm_audit -s V -l version -d 'Print version'
