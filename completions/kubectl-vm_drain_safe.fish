complete -c kubectl-vm_drain_safe -l exec -d 'With --rolling: the maintenance of each node once drained, run by `sh -c` with NODE set to the node\'s name; a non-zero exit stops the round (resumable)' -r
complete -c kubectl-vm_drain_safe -l gate -d 'With --rolling: the operator\'s check after each node, run by `sh -c` with NODE set once that node\'s VMs are Running and Ready (an application\'s quorum, say); a non-zero exit stops the round before the next node' -r
complete -c kubectl-vm_drain_safe -l node-timeout -d 'With --rolling: how long a maintained node may take to be Ready and schedulable again, and its VMs to be healthy, before the round stops' -r
complete -c kubectl-vm_drain_safe -s l -l selector -d 'With --rolling: the nodes of the round by label (e.g. pool=workers), instead of names' -r
complete -c kubectl-vm_drain_safe -l maintenance-time -d 'With --rolling: how long the maintenance of one node takes once drained (reboot, upgrade), for the time estimate' -r
complete -c kubectl-vm_drain_safe -l min-free-memory -d 'With --rolling: the memory that the nodes able to take a pod must keep free during every step (e.g. 64Gi), as headroom for a node failing while another is in maintenance. A step that would leave less is not feasible: the plan names it, and a running round stops before that node\'s drain' -r
complete -c kubectl-vm_drain_safe -l timeout -d 'Give up after this long (e.g. 90s, 15m, 1h); migrations not started are cancelled and the node stays cordoned' -r
complete -c kubectl-vm_drain_safe -l pending-timeout -d 'How long a migration\'s target pod may stay Pending because no node can take it (e.g. 20s, 5m) before that VM is reported BLOCKED with the scheduler\'s message: its migration is cancelled and not retried, the others finish, the run stops (exit 3). Default: KubeVirt\'s own limit for an unschedulable target pod' -r
complete -c kubectl-vm_drain_safe -l migration-timeout -d 'How long one migration may run before it is cancelled as stuck (e.g. 10m); the drain then stops (exit 3, resumable) unless --on-stuck shutdown. Default: each VM\'s KubeVirt completion timeout (completionTimeoutPerGiB, 150 s unless a MigrationPolicy or the KubeVirt CR says otherwise, times its memory in GB)' -r
complete -c kubectl-vm_drain_safe -l on-stuck -d 'What to do with a VM whose migration ran past --migration-timeout: `block` stops the drain (the node stays cordoned; the same command resumes), `shutdown` stops that VM as --shutdown-non-migratable does, records it for restart, and goes on' -r -f -a "block\t'Cancel the migration and stop the drain'
shutdown\t'Cancel the migration and stop the VM (restarted at `--uncordon`)'"
complete -c kubectl-vm_drain_safe -l migration-attempts -d 'Tries per VM before a failing migration stops the drain' -r
complete -c kubectl-vm_drain_safe -l lock-namespace -d 'Namespace of the per-node lock (a Lease named vm-drain-safe-NODE)' -r
complete -c kubectl-vm_drain_safe -s o -l output -d 'Output format of the plan' -r -f -a "table\t'One row per VM and pod, for people'
wide\t'The table with eviction strategy, migratability and run strategy'
json\t'The `vm-drain-safe/v1` DrainPlan (RollingPlan with --rolling)'
yaml\t'The same plan as YAML'"
complete -c kubectl-vm_drain_safe -l kubeconfig -d 'Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config)' -r -F
complete -c kubectl-vm_drain_safe -l context -d 'The kubeconfig context to use' -r
complete -c kubectl-vm_drain_safe -l cluster -d 'The name of the kubeconfig cluster to use' -r
complete -c kubectl-vm_drain_safe -l user -d 'The name of the kubeconfig user to use' -r
complete -c kubectl-vm_drain_safe -s s -l server -d 'The address and port of the Kubernetes API server' -r
complete -c kubectl-vm_drain_safe -l token -d 'Bearer token for authentication to the API server' -r
complete -c kubectl-vm_drain_safe -l certificate-authority -d 'Path to a cert file for the certificate authority' -r -F
complete -c kubectl-vm_drain_safe -l tls-server-name -d 'Server name to use for server certificate validation. If it is not provided, the hostname used to contact the server is used' -r
complete -c kubectl-vm_drain_safe -l insecure-skip-tls-verify -d 'If true, the server\'s certificate will not be checked for validity. This will make your HTTPS connections insecure' -r -f -a "true\t''
false\t''"
complete -c kubectl-vm_drain_safe -l as -d 'Username to impersonate for the operation. User could be a regular user or a service account in a namespace' -r
complete -c kubectl-vm_drain_safe -l as-group -d 'Group to impersonate for the operation, this flag can be repeated to specify multiple groups' -r
complete -c kubectl-vm_drain_safe -l request-timeout -d 'The length of time to wait before giving up on a single server request. Non-zero values should contain a corresponding time unit (e.g. 1s, 2m, 3h). A value of zero means don\'t timeout requests' -r
complete -c kubectl-vm_drain_safe -s v -l v -d 'Number for the log level verbosity, as kubectl\'s -v=N: 2 info, 4 debug, 6 trace (-v, -vv, -vvv for short); logs go to stderr' -r
complete -c kubectl-vm_drain_safe -l rolling -d 'A rolling maintenance round over many nodes: the plan first (the order in which each can be drained, maintained and uncordoned, where each VM goes, once where the cluster has room, the time it takes and the room left), then node by node: drain, maintenance (--exec or --pause), wait until Ready, uncordon, health gate. Its state is kept in the cluster: --status shows it, the same command resumes it, --abort ends it'
complete -c kubectl-vm_drain_safe -l pause -d 'With --rolling: stop after each node\'s drain, the node cordoned, until `--rolling --continue` says its maintenance is done'
complete -c kubectl-vm_drain_safe -l continue -d 'With --rolling: the paused node\'s maintenance is done; go on with the round'
complete -c kubectl-vm_drain_safe -l status -d 'With --rolling: show the round recorded in the cluster (any terminal), changing nothing'
complete -c kubectl-vm_drain_safe -l abort -d 'With --rolling: end the round: uncordon the nodes it cordoned, restart the VMs its drains stopped, remove its node labels and release its locks'
complete -c kubectl-vm_drain_safe -l dry-run -d 'Print the plan and stop; change nothing'
complete -c kubectl-vm_drain_safe -l uncordon -d 'Uncordon the node after maintenance, restart the VMs this drain stopped, release the lock'
complete -c kubectl-vm_drain_safe -s y -l yes -d 'Do not ask for confirmation (required when stdin is not a terminal)'
complete -c kubectl-vm_drain_safe -l shutdown-non-migratable -d 'Stop VMs that cannot live-migrate instead of blocking on them'
complete -c kubectl-vm_drain_safe -l force -d 'Evict pods that no controller manages (they are not recreated), as kubectl drain --force'
complete -c kubectl-vm_drain_safe -l delete-emptydir-data -d 'Evict pods that use emptyDir volumes (their data is lost), as kubectl drain does'
complete -c kubectl-vm_drain_safe -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kubectl-vm_drain_safe -s V -l version -d 'Print version'
