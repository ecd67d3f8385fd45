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
'--dry-run[Print the assessment and stop; change nothing]' \
'(--dry-run)--confirm-fenced[I have made sure the node is powered off (fenced)\: its VMs may be started elsewhere. Without it, a terminal asks you to type the node name]' \
'--force[With --confirm-fenced\: recover even though the node still renews its Lease (its kubelet looks alive). Only when you know it is off despite that]' \
'--start-stopped[Also start elsewhere the VMs with runStrategy Manual (KubeVirt leaves them stopped)]' \
'-y[Live-migrate a Ready node'\''s VMs without asking (required when stdin is not a terminal)]' \
'--yes[Live-migrate a Ready node'\''s VMs without asking (required when stdin is not a terminal)]' \
'(--dry-run --confirm-fenced --start-stopped -y --yes)--cleanup[Remove the out-of-service taint once the node is back and Ready]' \
'*-v[More log output on stderr (-v info, -vv debug, -vvv trace)]' \
'*--verbose[More log output on stderr (-v info, -vv debug, -vvv trace)]' \
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
