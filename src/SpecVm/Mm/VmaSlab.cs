using SpecVm.Sync;

namespace SpecVm.Mm;

/// <summary>
/// The VMA cache (Linux <c>vm_area_cachep</c>, <c>SLAB_TYPESAFE_BY_RCU</c> since 6.15): VMAs are reused, but a retired
/// VMA returns to the free list only after an SRCU grace period, so no lockless reader that could still hold it sees
/// it change identity. Reuse is first-in first-out, which keeps a freed VMA poisoned as long as possible.
/// </summary>
internal sealed class VmaSlab
{
    private readonly Srcu _srcu;
    private readonly bool _poison;
    private readonly Queue<Vma> _free = new();
    private readonly object _lock = new();
    private long _poisonedReads;
    private long _allocated;
    private long _retired;
    private long _reused;
    private long _returned;

    /// <summary>Creates a slab whose retirements wait for grace periods of <paramref name="srcu"/>.</summary>
    /// <param name="srcu">The SRCU domain lockless VMA readers use.</param>
    /// <param name="poison">Poison VMAs as they return to the free list (a debugging aid).</param>
    public VmaSlab(Srcu srcu, bool poison)
    {
        ArgumentNullException.ThrowIfNull(srcu);
        _srcu = srcu;
        _poison = poison;
    }

    /// <summary>Planted bug for tests: return retired VMAs at once, without a grace period.</summary>
    internal bool PlantSkipGracePeriod { get; set; }

    /// <summary>Reads of a poisoned (freed) VMA's fields seen so far: nonzero means a reader outlived a grace period.</summary>
    public long PoisonedReads => Volatile.Read(ref _poisonedReads);

    /// <summary>VMAs created (not reused).</summary>
    public long Created => Volatile.Read(ref _allocated);

    /// <summary>VMAs retired (waiting for or past their grace period).</summary>
    public long Retired => Volatile.Read(ref _retired);

    /// <summary>VMAs back on the free list after their grace period.</summary>
    public long Returned => Volatile.Read(ref _returned);

    /// <summary>Allocations served from the free list.</summary>
    public long Reused => Volatile.Read(ref _reused);

    internal Vma Allocate()
    {
        lock (_lock)
        {
            if (_free.Count > 0)
            {
                _reused++;
                return _free.Dequeue();
            }
        }

        Interlocked.Increment(ref _allocated); // Statistics only, outside the free-list lock.
        return new Vma(this);
    }

    /// <summary>Retires a detached VMA: it returns to the free list after a grace period.</summary>
    internal void Retire(Vma vma)
    {
        Interlocked.Increment(ref _retired);
        if (PlantSkipGracePeriod)
        {
            Return(vma);
            return;
        }

        // The VMA itself is the state (it knows its slab): no allocation per retire (a tuple state would be boxed).
        _srcu.Defer(static state => ((Vma)state!).Slab.Return((Vma)state), vma);
    }

    internal void ReportPoisonedRead() => Interlocked.Increment(ref _poisonedReads); // Atomic: any CPU may report.

    private void Return(Vma vma)
    {
        if (_poison)
        {
            vma.Poison();
        }

        lock (_lock)
        {
            _free.Enqueue(vma);
            _returned++;
        }
    }
}
