complete -c kubectl-vm_recover -l from-node -d 'The node whose VMs to recover' -r
complete -c kubectl-vm_recover -l timeout -d 'Give up waiting after this long (e.g. 90s, 15m, 1h); what is where is reported' -r
complete -c kubectl-vm_recover -l pending-timeout -d 'How long a migration\'s target pod may stay Pending because no node can take it (e.g. 20s, 5m) before that VM is reported BLOCKED with the scheduler\'s message: its migration is cancelled and not retried, the others finish, the run stops (exit 3). Default: KubeVirt\'s own limit for an unschedulable target pod' -r
complete -c kubectl-vm_recover -l lock-namespace -d 'Namespace of the per-node lock shared with vm-drain-safe (a Lease named vm-drain-safe-NODE)' -r
complete -c kubectl-vm_recover -s o -l output -d 'Output format of the assessment and the result' -r -f -a "table\t'One row per VM, for people'
wide\t'The table with launcher pods and volume attachments'
json\t'The `vm-recover/v1` RecoveryPlan (and RecoveryResult)'
yaml\t'The same as YAML'"
complete -c kubectl-vm_recover -l kubeconfig -d 'Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config)' -r -F
complete -c kubectl-vm_recover -l context -d 'The kubeconfig context to use' -r
complete -c kubectl-vm_recover -l dry-run -d 'Print the assessment and stop; change nothing'
complete -c kubectl-vm_recover -l confirm-fenced -d 'I have made sure the node is powered off (fenced): its VMs may be started elsewhere. Without it, a terminal asks you to type the node name'
complete -c kubectl-vm_recover -l force -d 'With --confirm-fenced: recover even though the node still renews its Lease (its kubelet looks alive). Only when you know it is off despite that'
complete -c kubectl-vm_recover -l start-stopped -d 'Also start elsewhere the VMs with runStrategy Manual (KubeVirt leaves them stopped)'
complete -c kubectl-vm_recover -s y -l yes -d 'Live-migrate a Ready node\'s VMs without asking (required when stdin is not a terminal)'
complete -c kubectl-vm_recover -l cleanup -d 'Remove the out-of-service taint once the node is back and Ready'
complete -c kubectl-vm_recover -s v -l verbose -d 'More log output on stderr (-v info, -vv debug, -vvv trace)'
complete -c kubectl-vm_recover -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kubectl-vm_recover -s V -l version -d 'Print version'
