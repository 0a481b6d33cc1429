import type { NetfilterHook } from '../os/linux/netfilter.js';
import { hex } from '../util/hex.js';
import { readerTable } from './hookTable.js';
import { kernelProvider } from './providers/kernel.js';
import { allModulesProvider } from './providers/modules.js';
import { netfilterProvider } from './providers/tampering.js';
import { defineAnalysis, type Column, type Row } from './types.js';

const columns: readonly Column[] = [
  { key: 'net_inode', kind: 'int', title: 'Net ns' },
  { key: 'family', kind: 'text', title: 'Family' },
  { key: 'hook', kind: 'text', title: 'Hook' },
  { key: 'device', kind: 'text', title: 'Device' },
  { key: 'position', kind: 'int', title: '#' },
  { key: 'priority', kind: 'int', title: 'Priority' },
  { key: 'function', kind: 'address', title: 'Function' },
  { key: 'symbol', kind: 'text', title: 'Symbol' },
  { key: 'owner', kind: 'text', title: 'Owner' },
  { key: 'ops', kind: 'address', title: 'nf_hook_ops' },
  { key: 'net', kind: 'address', title: 'struct net' },
  { key: 'suspicious', kind: 'bool', title: 'Suspicious' },
  { key: 'evidence', kind: 'text', title: 'Evidence' },
];

function hookRow(hook: NetfilterHook): Row {
  return {
    net_inode: hook.netInode,
    family: hook.family,
    hook: hook.hookName ?? String(hook.hooknum),
    device: hook.device ?? null,
    position: hook.position,
    priority: hook.priority ?? null,
    function: hex(hook.function),
    symbol: hook.symbol ?? null,
    owner: hook.owner,
    ops: hex(hook.ops),
    net: hex(hook.net),
    suspicious: hook.suspicious,
    evidence: hook.evidence,
  };
}

/** Every netfilter hook per network namespace, family and hook point. */
export const netfilterAnalysis = defineAnalysis({
  name: 'netfilter',
  description: 'list every netfilter hook per network namespace, family and hook point: priority, function, owner',
  columns,
  uses: [kernelProvider, allModulesProvider, netfilterProvider],
  help: `Reads net->nf.hooks_* of every namespace on net_namespace_list (and device ingress/egress
hooks), in the order the kernel runs them. A function outside kernel text is suspicious, as is an
entry whose function is not the one its nf_hook_ops registered. In-tree modules (nf_conntrack,
iptables, nftables) also hook from module memory: they are listed with their module's name as
owner, and judged the same way, so read a module-owned hook together with lsmod.`,
  async compute(inputs) {
    const kernel = await inputs.get(kernelProvider);
    const modules = await inputs.get(allModulesProvider);
    const report = await inputs.get(netfilterProvider);
    return readerTable(columns, report.hooks.map(hookRow), kernel, modules.warnings, report.problems);
  },
});
