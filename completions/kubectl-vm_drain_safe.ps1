
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'kubectl-vm_drain_safe' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'kubectl-vm_drain_safe'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'kubectl-vm_drain_safe' {
            [CompletionResult]::new('--exec', '--exec', [CompletionResultType]::ParameterName, 'With --rolling: the maintenance of each node once drained, run by `sh -c` with NODE set to the node''s name; a non-zero exit stops the round (resumable)')
            [CompletionResult]::new('--gate', '--gate', [CompletionResultType]::ParameterName, 'With --rolling: the operator''s check after each node, run by `sh -c` with NODE set once that node''s VMs are Running and Ready (an application''s quorum, say); a non-zero exit stops the round before the next node')
            [CompletionResult]::new('--node-timeout', '--node-timeout', [CompletionResultType]::ParameterName, 'With --rolling: how long a maintained node may take to be Ready and schedulable again, and its VMs to be healthy, before the round stops')
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'With --rolling: the nodes of the round by label (e.g. pool=workers), instead of names')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'With --rolling: the nodes of the round by label (e.g. pool=workers), instead of names')
            [CompletionResult]::new('--maintenance-time', '--maintenance-time', [CompletionResultType]::ParameterName, 'With --rolling: how long the maintenance of one node takes once drained (reboot, upgrade), for the time estimate')
            [CompletionResult]::new('--min-free-memory', '--min-free-memory', [CompletionResultType]::ParameterName, 'With --rolling: the memory that the nodes able to take a pod must keep free during every step (e.g. 64Gi), as headroom for a node failing while another is in maintenance. A step that would leave less is not feasible: the plan names it, and a running round stops before that node''s drain')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long (e.g. 90s, 15m, 1h); migrations not started are cancelled and the node stays cordoned')
            [CompletionResult]::new('--pending-timeout', '--pending-timeout', [CompletionResultType]::ParameterName, 'How long a migration''s target pod may stay Pending because no node can take it (e.g. 20s, 5m) before that VM is reported BLOCKED with the scheduler''s message: its migration is cancelled and not retried, the others finish, the run stops (exit 3). Default: KubeVirt''s own limit for an unschedulable target pod')
            [CompletionResult]::new('--migration-timeout', '--migration-timeout', [CompletionResultType]::ParameterName, 'How long one migration may run before it is cancelled as stuck (e.g. 10m); the drain then stops (exit 3, resumable) unless --on-stuck shutdown. Default: each VM''s KubeVirt completion timeout (completionTimeoutPerGiB, 150 s unless a MigrationPolicy or the KubeVirt CR says otherwise, times its memory in GB)')
            [CompletionResult]::new('--on-stuck', '--on-stuck', [CompletionResultType]::ParameterName, 'What to do with a VM whose migration ran past --migration-timeout: `block` stops the drain (the node stays cordoned; the same command resumes), `shutdown` stops that VM as --shutdown-non-migratable does, records it for restart, and goes on')
            [CompletionResult]::new('--migration-attempts', '--migration-attempts', [CompletionResultType]::ParameterName, 'Tries per VM before a failing migration stops the drain')
            [CompletionResult]::new('--lock-namespace', '--lock-namespace', [CompletionResultType]::ParameterName, 'Namespace of the per-node lock (a Lease named vm-drain-safe-NODE)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format of the plan')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of the plan')
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config)')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'The kubeconfig context to use')
            [CompletionResult]::new('--cluster', '--cluster', [CompletionResultType]::ParameterName, 'The name of the kubeconfig cluster to use')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The name of the kubeconfig user to use')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'The address and port of the Kubernetes API server')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'The address and port of the Kubernetes API server')
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Bearer token for authentication to the API server')
            [CompletionResult]::new('--certificate-authority', '--certificate-authority', [CompletionResultType]::ParameterName, 'Path to a cert file for the certificate authority')
            [CompletionResult]::new('--tls-server-name', '--tls-server-name', [CompletionResultType]::ParameterName, 'Server name to use for server certificate validation. If it is not provided, the hostname used to contact the server is used')
            [CompletionResult]::new('--insecure-skip-tls-verify', '--insecure-skip-tls-verify', [CompletionResultType]::ParameterName, 'If true, the server''s certificate will not be checked for validity. This will make your HTTPS connections insecure')
            [CompletionResult]::new('--as', '--as', [CompletionResultType]::ParameterName, 'Username to impersonate for the operation. User could be a regular user or a service account in a namespace')
            [CompletionResult]::new('--as-group', '--as-group', [CompletionResultType]::ParameterName, 'Group to impersonate for the operation, this flag can be repeated to specify multiple groups')
            [CompletionResult]::new('--request-timeout', '--request-timeout', [CompletionResultType]::ParameterName, 'The length of time to wait before giving up on a single server request. Non-zero values should contain a corresponding time unit (e.g. 1s, 2m, 3h). A value of zero means don''t timeout requests')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Number for the log level verbosity, as kubectl''s -v=N: 2 info, 4 debug, 6 trace (-v, -vv, -vvv for short); logs go to stderr')
            [CompletionResult]::new('--v', '--v', [CompletionResultType]::ParameterName, 'Number for the log level verbosity, as kubectl''s -v=N: 2 info, 4 debug, 6 trace (-v, -vv, -vvv for short); logs go to stderr')
            [CompletionResult]::new('--rolling', '--rolling', [CompletionResultType]::ParameterName, 'A rolling maintenance round over many nodes: the plan first (the order in which each can be drained, maintained and uncordoned, where each VM goes, once where the cluster has room, the time it takes and the room left), then node by node: drain, maintenance (--exec or --pause), wait until Ready, uncordon, health gate. Its state is kept in the cluster: --status shows it, the same command resumes it, --abort ends it')
            [CompletionResult]::new('--pause', '--pause', [CompletionResultType]::ParameterName, 'With --rolling: stop after each node''s drain, the node cordoned, until `--rolling --continue` says its maintenance is done')
            [CompletionResult]::new('--continue', '--continue', [CompletionResultType]::ParameterName, 'With --rolling: the paused node''s maintenance is done; go on with the round')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'With --rolling: show the round recorded in the cluster (any terminal), changing nothing')
            [CompletionResult]::new('--abort', '--abort', [CompletionResultType]::ParameterName, 'With --rolling: end the round: uncordon the nodes it cordoned, restart the VMs its drains stopped, remove its node labels and release its locks')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the plan and stop; change nothing')
            [CompletionResult]::new('--uncordon', '--uncordon', [CompletionResultType]::ParameterName, 'Uncordon the node after maintenance, restart the VMs this drain stopped, release the lock')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when stdin is not a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when stdin is not a terminal)')
            [CompletionResult]::new('--shutdown-non-migratable', '--shutdown-non-migratable', [CompletionResultType]::ParameterName, 'Stop VMs that cannot live-migrate instead of blocking on them')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Evict pods that no controller manages (they are not recreated), as kubectl drain --force')
            [CompletionResult]::new('--delete-emptydir-data', '--delete-emptydir-data', [CompletionResultType]::ParameterName, 'Evict pods that use emptyDir volumes (their data is lost), as kubectl drain does')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
