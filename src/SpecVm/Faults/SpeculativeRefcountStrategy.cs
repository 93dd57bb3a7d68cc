using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Faults;

/// <summary>
/// The speculative path with one extra shared atomic per fault: a get and a put on the faulting VMA's reference count
/// (its own cache line), as a design that pins VMAs with a refcount instead of SRCU would do. Lespinasse measured the
/// cost of exactly this on his 2021 series: one atomic per VMA "would decrease the 48-threads throughput by 62%"
/// (docs/references.md, the speculative page-fault series) — every CPU faulting in one VMA bounces that line twice per
/// fault. A comparison strategy, not for production use: it shows in the model what one shared line costs.
/// </summary>
public sealed class SpeculativeRefcountStrategy : FaultStrategy
{
    private readonly SpeculativeStrategy _inner = new();

    /// <inheritdoc/>
    public override string Name => "speculative-refcount";

    /// <inheritdoc/>
    public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);

        // A lockless lookup: VMA objects are slab-typesafe (never freed while the address space lives), so touching the
        // count of one that is being retired meanwhile is harmless; the speculative path then validates as usual.
        Vma? vma = mm.Vmas.Find(address);
        if (vma != null)
        {
            // Full fence (Interlocked): the point is the shared line's round trip, as a get_vma() would cost.
            VirtualTime.Access(vma, Vma.LineRefs, LineAccess.Rmw);
            Interlocked.Increment(ref vma.Refs);
        }

        try
        {
            return _inner.HandleFault(cpu, mm, address, write);
        }
        finally
        {
            if (vma != null)
            {
                VirtualTime.Access(vma, Vma.LineRefs, LineAccess.Rmw);
                Interlocked.Decrement(ref vma.Refs); // Full fence: the put, as a put_vma() would.
            }
        }
    }
}
