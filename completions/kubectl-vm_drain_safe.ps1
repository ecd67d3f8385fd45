
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
            [CompletionResult]::new('-l', '-l', [CompletionResultType]::ParameterName, 'With --rolling: the nodes of the round by label (e.g. pool=workers), instead of names')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'With --rolling: the nodes of the round by label (e.g. pool=workers), instead of names')
            [CompletionResult]::new('--maintenance-time', '--maintenance-time', [CompletionResultType]::ParameterName, 'With --rolling: how long the maintenance of one node takes once drained (reboot, upgrade), for the time estimate')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long (e.g. 90s, 15m, 1h); migrations not started are cancelled and the node stays cordoned')
            [CompletionResult]::new('--pending-timeout', '--pending-timeout', [CompletionResultType]::ParameterName, 'How long a migration''s target pod may stay Pending because no node can take it (e.g. 20s, 5m) before that VM is reported BLOCKED with the scheduler''s message: its migration is cancelled and not retried, the others finish, the run stops (exit 3). Default: KubeVirt''s own limit for an unschedulable target pod')
            [CompletionResult]::new('--migration-attempts', '--migration-attempts', [CompletionResultType]::ParameterName, 'Tries per VM before a failing migration stops the drain')
            [CompletionResult]::new('--lock-namespace', '--lock-namespace', [CompletionResultType]::ParameterName, 'Namespace of the per-node lock (a Lease named vm-drain-safe-NODE)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format of the plan')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of the plan')
            [CompletionResult]::new('--kubeconfig', '--kubeconfig', [CompletionResultType]::ParameterName, 'Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config)')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'The kubeconfig context to use')
            [CompletionResult]::new('--rolling', '--rolling', [CompletionResultType]::ParameterName, 'Plan a rolling maintenance round of many nodes: the order in which each can be drained, maintained and uncordoned, where each VM goes (once, where the cluster has room), the time it takes and the room left. Only with --dry-run: running a round is not available yet')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the plan and stop; change nothing')
            [CompletionResult]::new('--uncordon', '--uncordon', [CompletionResultType]::ParameterName, 'Uncordon the node after maintenance, restart the VMs this drain stopped, release the lock')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when stdin is not a terminal)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Do not ask for confirmation (required when stdin is not a terminal)')
            [CompletionResult]::new('--shutdown-non-migratable', '--shutdown-non-migratable', [CompletionResultType]::ParameterName, 'Stop VMs that cannot live-migrate instead of blocking on them')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Evict pods that no controller manages (they are not recreated), as kubectl drain --force')
            [CompletionResult]::new('--delete-emptydir-data', '--delete-emptydir-data', [CompletionResultType]::ParameterName, 'Evict pods that use emptyDir volumes (their data is lost), as kubectl drain does')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug, -vvv trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output on stderr (-v info, -vv debug, -vvv trace)')
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
