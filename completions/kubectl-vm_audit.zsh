#compdef kubectl-vm_audit

autoload -U is-at-least

_kubectl-vm_audit() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'*-f+[Read manifests instead of the cluster\: a file, a directory (recursively), or - for stdin. Repeatable. YAML or JSON, multi-document, \`kind\: List\`]:FILE|DIR|-:_files' \
'*--filename=[Read manifests instead of the cluster\: a file, a directory (recursively), or - for stdin. Repeatable. YAML or JSON, multi-document, \`kind\: List\`]:FILE|DIR|-:_files' \
'--kubeconfig=[Path to the kubeconfig file to use (default\: \$KUBECONFIG, then ~/.kube/config)]:FILE:_files' \
'--context=[The kubeconfig context to use]:NAME:_default' \
'--cluster=[The name of the kubeconfig cluster to use]:NAME:_default' \
'--user=[The name of the kubeconfig user to use]:NAME:_default' \
'-s+[The address and port of the Kubernetes API server]:URL:_default' \
'--server=[The address and port of the Kubernetes API server]:URL:_default' \
'--token=[Bearer token for authentication to the API server]:TOKEN:_default' \
'--certificate-authority=[Path to a cert file for the certificate authority]:FILE:_files' \
'--tls-server-name=[Server name to use for server certificate validation. If it is not provided, the hostname used to contact the server is used]:NAME:_default' \
'--insecure-skip-tls-verify=[If true, the server'\''s certificate will not be checked for validity. This will make your HTTPS connections insecure]::BOOL:(true false)' \
'--as=[Username to impersonate for the operation. User could be a regular user or a service account in a namespace]:USER:_default' \
'*--as-group=[Group to impersonate for the operation, this flag can be repeated to specify multiple groups]:GROUP:_default' \
'--request-timeout=[The length of time to wait before giving up on a single server request. Non-zero values should contain a corresponding time unit (e.g. 1s, 2m, 3h). A value of zero means don'\''t timeout requests]:DURATION:_default' \
'(-A --all-namespaces)-n+[Namespace to look in (default\: the context'\''s namespace)]:NAMESPACE:_default' \
'(-A --all-namespaces)--namespace=[Namespace to look in (default\: the context'\''s namespace)]:NAMESPACE:_default' \
'-l+[Only audit VMs, VMIs, replica sets and pools with these labels (e.g. app=web,tier!=dev)]:SELECTOR:_default' \
'--selector=[Only audit VMs, VMIs, replica sets and pools with these labels (e.g. app=web,tier!=dev)]:SELECTOR:_default' \
'-o+[Output format]:OUTPUT:((table\:"Findings grouped by object, for people"
wide\:"The table with category and fix hint columns, and suppressed findings"
json\:"The \`vm-audit/v1\` AuditReport, for scripts"
yaml\:"The same report as YAML"
sarif\:"SARIF 2.1.0, for code-scanning tools"
junit\:"JUnit XML, one test case per object, for CI dashboards"))' \
'--output=[Output format]:OUTPUT:((table\:"Findings grouped by object, for people"
wide\:"The table with category and fix hint columns, and suppressed findings"
json\:"The \`vm-audit/v1\` AuditReport, for scripts"
yaml\:"The same report as YAML"
sarif\:"SARIF 2.1.0, for code-scanning tools"
junit\:"JUnit XML, one test case per object, for CI dashboards"))' \
'--fail-on=[Exit 1 when a finding is at least this severe]:SEVERITY:(info warning error)' \
'--max-migration-time=[Flag VMs whose migration KubeVirt lets run longer than this (e.g. 30m, 1h)\: their memory times completionTimeoutPerGiB, from the KubeVirt CR or the MigrationPolicy that selects them (rule migration-timeout-exceeds-limit). Off by default]:DURATION:_default' \
'--explain=[Explain one rule\: what it checks, why it matters, how to fix it]:RULE:_default' \
'*-v+[Number for the log level verbosity, as kubectl'\''s -v=N\: 2 info, 4 debug, 6 trace (-v, -vv, -vvv for short); logs go to stderr]::LEVEL:_default' \
'*--v=[Number for the log level verbosity, as kubectl'\''s -v=N\: 2 info, 4 debug, 6 trace (-v, -vv, -vvv for short); logs go to stderr]::LEVEL:_default' \
'--audit-duplicates[With -f\: an object given more than once (same kind, namespace and name, in two files say) is audited once per copy, each shown with its file and line, instead of being an input error. Each copy is audited beside the same-numbered copy of every other object given as often (the first copy of the rest)]' \
'-A[Look in every namespace]' \
'--all-namespaces[Look in every namespace]' \
'(--explain)--list-rules[List every rule with its id, severity and category]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
}

(( $+functions[_kubectl-vm_audit_commands] )) ||
_kubectl-vm_audit_commands() {
    local commands; commands=()
    _describe -t commands 'kubectl-vm_audit commands' commands "$@"
}

if [ "$funcstack[1]" = "_kubectl-vm_audit" ]; then
    _kubectl-vm_audit "$@"
else
    compdef _kubectl-vm_audit kubectl-vm_audit
fi
