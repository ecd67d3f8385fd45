complete -c kubectl-vm_drain_safe -s l -l selector -d 'With --rolling: the nodes of the round by label (e.g. pool=workers), instead of names' -r
complete -c kubectl-vm_drain_safe -l maintenance-time -d 'With --rolling: how long the maintenance of one node takes once drained (reboot, upgrade), for the time estimate' -r
complete -c kubectl-vm_drain_safe -l timeout -d 'Give up after this long (e.g. 90s, 15m, 1h); migrations not started are cancelled and the node stays cordoned' -r
complete -c kubectl-vm_drain_safe -l pending-timeout -d 'How long a migration\'s target pod may stay Pending because no node can take it (e.g. 20s, 5m) before that VM is reported BLOCKED with the scheduler\'s message: its migration is cancelled and not retried, the others finish, the run stops (exit 3). Default: KubeVirt\'s own limit for an unschedulable target pod' -r
complete -c kubectl-vm_drain_safe -l migration-attempts -d 'Tries per VM before a failing migration stops the drain' -r
complete -c kubectl-vm_drain_safe -l lock-namespace -d 'Namespace of the per-node lock (a Lease named vm-drain-safe-NODE)' -r
complete -c kubectl-vm_drain_safe -s o -l output -d 'Output format of the plan' -r -f -a "table\t'One row per VM and pod, for people'
wide\t'The table with eviction strategy, migratability and run strategy'
json\t'The `vm-drain-safe/v1` DrainPlan (RollingPlan with --rolling)'
yaml\t'The same plan as YAML'"
complete -c kubectl-vm_drain_safe -l kubeconfig -d 'Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config)' -r -F
complete -c kubectl-vm_drain_safe -l context -d 'The kubeconfig context to use' -r
complete -c kubectl-vm_drain_safe -l rolling -d 'Plan a rolling maintenance round of many nodes: the order in which each can be drained, maintained and uncordoned, where each VM goes (once, where the cluster has room), the time it takes and the room left. Only with --dry-run: running a round is not available yet'
complete -c kubectl-vm_drain_safe -l dry-run -d 'Print the plan and stop; change nothing'
complete -c kubectl-vm_drain_safe -l uncordon -d 'Uncordon the node after maintenance, restart the VMs this drain stopped, release the lock'
complete -c kubectl-vm_drain_safe -s y -l yes -d 'Do not ask for confirmation (required when stdin is not a terminal)'
complete -c kubectl-vm_drain_safe -l shutdown-non-migratable -d 'Stop VMs that cannot live-migrate instead of blocking on them'
complete -c kubectl-vm_drain_safe -l force -d 'Evict pods that no controller manages (they are not recreated), as kubectl drain --force'
complete -c kubectl-vm_drain_safe -l delete-emptydir-data -d 'Evict pods that use emptyDir volumes (their data is lost), as kubectl drain does'
complete -c kubectl-vm_drain_safe -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c kubectl-vm_drain_safe -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kubectl-vm_drain_safe -s V -l version -d 'Print version'
