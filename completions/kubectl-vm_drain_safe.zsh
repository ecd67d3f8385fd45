#compdef kubectl-vm_drain_safe

autoload -U is-at-least

_kubectl-vm_drain_safe() {
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
'(--pause --dry-run)--exec=[With --rolling\: the maintenance of each node once drained, run by \`sh -c\` with NODE set to the node'\''s name; a non-zero exit stops the round (resumable)]:CMD:_default' \
'(--dry-run)--gate=[With --rolling\: the operator'\''s check after each node, run by \`sh -c\` with NODE set once that node'\''s VMs are Running and Ready (an application'\''s quorum, say); a non-zero exit stops the round before the next node]:CMD:_default' \
'--node-timeout=[With --rolling\: how long a maintained node may take to be Ready and schedulable again, and its VMs to be healthy, before the round stops]:DURATION:_default' \
'()-l+[With --rolling\: the nodes of the round by label (e.g. pool=workers), instead of names]:SELECTOR:_default' \
'()--selector=[With --rolling\: the nodes of the round by label (e.g. pool=workers), instead of names]:SELECTOR:_default' \
'--maintenance-time=[With --rolling\: how long the maintenance of one node takes once drained (reboot, upgrade), for the time estimate]:DURATION:_default' \
'--min-free-memory=[With --rolling\: the memory that the nodes able to take a pod must keep free during every step (e.g. 64Gi), as headroom for a node failing while another is in maintenance. A step that would leave less is not feasible\: the plan names it, and a running round stops before that node'\''s drain]:QUANTITY:_default' \
'--timeout=[Give up after this long (e.g. 90s, 15m, 1h); migrations not started are cancelled and the node stays cordoned]:DURATION:_default' \
'--pending-timeout=[How long a migration'\''s target pod may stay Pending because no node can take it (e.g. 20s, 5m) before that VM is reported BLOCKED with the scheduler'\''s message\: its migration is cancelled and not retried, the others finish, the run stops (exit 3). Default\: KubeVirt'\''s own limit for an unschedulable target pod]:DURATION:_default' \
'--migration-timeout=[How long one migration may run before it is cancelled as stuck (e.g. 10m); the drain then stops (exit 3, resumable) unless --on-stuck shutdown. Default\: each VM'\''s KubeVirt completion timeout (completionTimeoutPerGiB, 150 s unless a MigrationPolicy or the KubeVirt CR says otherwise, times its memory in GB)]:DURATION:_default' \
'--on-stuck=[What to do with a VM whose migration ran past --migration-timeout\: \`block\` stops the drain (the node stays cordoned; the same command resumes), \`shutdown\` stops that VM as --shutdown-non-migratable does, records it for restart, and goes on]:WHAT:((block\:"Cancel the migration and stop the drain"
shutdown\:"Cancel the migration and stop the VM (restarted at \`--uncordon\`)"))' \
'--migration-attempts=[Tries per VM before a failing migration stops the drain]:N:_default' \
'--lock-namespace=[Namespace of the per-node lock (a Lease named vm-drain-safe-NODE)]:NAMESPACE:_default' \
'-o+[Output format of the plan]:OUTPUT:((table\:"One row per VM and pod, for people"
wide\:"The table with eviction strategy, migratability and run strategy"
json\:"The \`vm-drain-safe/v1\` DrainPlan (RollingPlan with --rolling)"
yaml\:"The same plan as YAML"))' \
'--output=[Output format of the plan]:OUTPUT:((table\:"One row per VM and pod, for people"
wide\:"The table with eviction strategy, migratability and run strategy"
json\:"The \`vm-drain-safe/v1\` DrainPlan (RollingPlan with --rolling)"
yaml\:"The same plan as YAML"))' \
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
'(--uncordon)--rolling[A rolling maintenance round over many nodes\: the plan first (the order in which each can be drained, maintained and uncordoned, where each VM goes, once where the cluster has room, the time it takes and the room left), then node by node\: drain, maintenance (--exec or --pause), wait until Ready, uncordon, health gate. Its state is kept in the cluster\: --status shows it, the same command resumes it, --abort ends it]' \
'(--dry-run)--pause[With --rolling\: stop after each node'\''s drain, the node cordoned, until \`--rolling --continue\` says its maintenance is done]' \
'(--dry-run -l --selector --exec --pause --status --abort)--continue[With --rolling\: the paused node'\''s maintenance is done; go on with the round]' \
'(--dry-run -l --selector --exec --pause --abort)--status[With --rolling\: show the round recorded in the cluster (any terminal), changing nothing]' \
'(--dry-run -l --selector --exec --pause)--abort[With --rolling\: end the round\: uncordon the nodes it cordoned, restart the VMs its drains stopped, remove its node labels and release its locks]' \
'--dry-run[Print the plan and stop; change nothing]' \
'(--dry-run --shutdown-non-migratable --force --delete-emptydir-data)--uncordon[Uncordon the node after maintenance, restart the VMs this drain stopped, release the lock]' \
'-y[Do not ask for confirmation (required when stdin is not a terminal)]' \
'--yes[Do not ask for confirmation (required when stdin is not a terminal)]' \
'--shutdown-non-migratable[Stop VMs that cannot live-migrate instead of blocking on them]' \
'--force[Evict pods that no controller manages (they are not recreated), as kubectl drain --force]' \
'--delete-emptydir-data[Evict pods that use emptyDir volumes (their data is lost), as kubectl drain does]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
'*::nodes -- The node to drain; with --rolling, the nodes of the round:_default' \
&& ret=0
}

(( $+functions[_kubectl-vm_drain_safe_commands] )) ||
_kubectl-vm_drain_safe_commands() {
    local commands; commands=()
    _describe -t commands 'kubectl-vm_drain_safe commands' commands "$@"
}

if [ "$funcstack[1]" = "_kubectl-vm_drain_safe" ]; then
    _kubectl-vm_drain_safe "$@"
else
    compdef _kubectl-vm_drain_safe kubectl-vm_drain_safe
fi
