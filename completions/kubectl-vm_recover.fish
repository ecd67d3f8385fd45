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
complete -c kubectl-vm_recover -l cluster -d 'The name of the kubeconfig cluster to use' -r
complete -c kubectl-vm_recover -l user -d 'The name of the kubeconfig user to use' -r
complete -c kubectl-vm_recover -s s -l server -d 'The address and port of the Kubernetes API server' -r
complete -c kubectl-vm_recover -l token -d 'Bearer token for authentication to the API server' -r
complete -c kubectl-vm_recover -l certificate-authority -d 'Path to a cert file for the certificate authority' -r -F
complete -c kubectl-vm_recover -l tls-server-name -d 'Server name to use for server certificate validation. If it is not provided, the hostname used to contact the server is used' -r
complete -c kubectl-vm_recover -l insecure-skip-tls-verify -d 'If true, the server\'s certificate will not be checked for validity. This will make your HTTPS connections insecure' -r -f -a "true\t''
false\t''"
complete -c kubectl-vm_recover -l as -d 'Username to impersonate for the operation. User could be a regular user or a service account in a namespace' -r
complete -c kubectl-vm_recover -l as-group -d 'Group to impersonate for the operation, this flag can be repeated to specify multiple groups' -r
complete -c kubectl-vm_recover -l request-timeout -d 'The length of time to wait before giving up on a single server request. Non-zero values should contain a corresponding time unit (e.g. 1s, 2m, 3h). A value of zero means don\'t timeout requests' -r
complete -c kubectl-vm_recover -s v -l v -d 'Number for the log level verbosity, as kubectl\'s -v=N: 2 info, 4 debug, 6 trace (-v, -vv, -vvv for short); logs go to stderr' -r
complete -c kubectl-vm_recover -l dry-run -d 'Print the assessment and stop; change nothing'
complete -c kubectl-vm_recover -l confirm-fenced -d 'I have made sure the node is powered off (fenced): its VMs may be started elsewhere. Without it, a terminal asks you to type the node name'
complete -c kubectl-vm_recover -l force -d 'With --confirm-fenced: recover even though the node still renews its Lease (its kubelet looks alive). Only when you know it is off despite that'
complete -c kubectl-vm_recover -l start-stopped -d 'Also start elsewhere the VMs with runStrategy Manual (KubeVirt leaves them stopped)'
complete -c kubectl-vm_recover -s y -l yes -d 'Live-migrate a Ready node\'s VMs without asking (required when stdin is not a terminal)'
complete -c kubectl-vm_recover -l cleanup -d 'Remove the out-of-service taint once the node is back and Ready'
complete -c kubectl-vm_recover -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kubectl-vm_recover -s V -l version -d 'Print version'
