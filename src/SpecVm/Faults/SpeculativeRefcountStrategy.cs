using SpecVm.Mm;
using SpecVm.Smp;

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
    public override IReadOnlyList<FaultOutcome> Outcomes => _inner.Outcomes;

    /// <inheritdoc/>
    public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);

        // The lookup and the get/put inside an SRCU read section, so the VMA cannot go back to the slab (and be reused)
        // while we hold our reference; the speculative path nests its own section inside (SRCU sections nest).
        int idx = cpu.Machine.Srcu.ReadLock(cpu.Id);
        try
        {
            Vma? vma = mm.Vmas.Find(address);
            vma?.Get(); // One atomic on the VMA's reference line: the point is that line's round trip, as get_vma() costs.

            try
            {
                return _inner.HandleFault(cpu, mm, address, write);
            }
            finally
            {
                vma?.Put(); // The put, as put_vma() (a full fence, as the get).
            }
        }
        finally
        {
            cpu.Machine.Srcu.ReadUnlockLocal(cpu.Id, idx); // Locked and unlocked on this CPU's own thread.
        }
    }
}
