#compdef kubectl-vm_recover

autoload -U is-at-least

_kubectl-vm_recover() {
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
'--from-node=[The node whose VMs to recover]:NODE:_default' \
'--timeout=[Give up waiting after this long (e.g. 90s, 15m, 1h); what is where is reported]:DURATION:_default' \
'--pending-timeout=[How long a migration'\''s target pod may stay Pending because no node can take it (e.g. 20s, 5m) before that VM is reported BLOCKED with the scheduler'\''s message\: its migration is cancelled and not retried, the others finish, the run stops (exit 3). Default\: KubeVirt'\''s own limit for an unschedulable target pod]:DURATION:_default' \
'--lock-namespace=[Namespace of the per-node lock shared with vm-drain-safe (a Lease named vm-drain-safe-NODE)]:NAMESPACE:_default' \
'-o+[Output format of the assessment and the result]:OUTPUT:((table\:"One row per VM, for people"
wide\:"The table with launcher pods and volume attachments"
json\:"The \`vm-recover/v1\` RecoveryPlan (and RecoveryResult)"
yaml\:"The same as YAML"))' \
'--output=[Output format of the assessment and the result]:OUTPUT:((table\:"One row per VM, for people"
wide\:"The table with launcher pods and volume attachments"
json\:"The \`vm-recover/v1\` RecoveryPlan (and RecoveryResult)"
yaml\:"The same as YAML"))' \
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
'*-v+[Number for the log level verbosity, as kubectl'\''s -v=N\: 2 info, 4 debug, 6 trace (-v, -vv, -vvv for short); logs go to stderr]::LEVEL:_default' \
'*--v=[Number for the log level verbosity, as kubectl'\''s -v=N\: 2 info, 4 debug, 6 trace (-v, -vv, -vvv for short); logs go to stderr]::LEVEL:_default' \
'--dry-run[Print the assessment and stop; change nothing]' \
'(--dry-run)--confirm-fenced[I have made sure the node is powered off (fenced)\: its VMs may be started elsewhere. Without it, a terminal asks you to type the node name]' \
'--force[With --confirm-fenced\: recover even though the node still renews its Lease (its kubelet looks alive). Only when you know it is off despite that]' \
'--start-stopped[Also start elsewhere the VMs with runStrategy Manual (KubeVirt leaves them stopped)]' \
'-y[Live-migrate a Ready node'\''s VMs without asking (required when stdin is not a terminal)]' \
'--yes[Live-migrate a Ready node'\''s VMs without asking (required when stdin is not a terminal)]' \
'(--dry-run --confirm-fenced --start-stopped -y --yes)--cleanup[Remove the out-of-service taint once the node is back and Ready]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
}

(( $+functions[_kubectl-vm_recover_commands] )) ||
_kubectl-vm_recover_commands() {
    local commands; commands=()
    _describe -t commands 'kubectl-vm_recover commands' commands "$@"
}

if [ "$funcstack[1]" = "_kubectl-vm_recover" ]; then
    _kubectl-vm_recover "$@"
else
    compdef _kubectl-vm_recover kubectl-vm_recover
fi
