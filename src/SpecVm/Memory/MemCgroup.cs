using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SpecVm.Sync;

namespace SpecVm.Memory;

/// <summary>
/// The memory cgroup charge path (Linux mm/memcontrol.c): a per-CPU stock of pre-charged pages, refilled
/// <see cref="ChargeBatch"/> pages at a time by charging a hierarchy of page counters, one atomic add per ancestor.
/// </summary>
/// <remarks>
/// <para>
/// Linux: <c>try_charge_memcg</c> first takes pages from the CPU's <c>memcg_stock</c> (<c>consume_stock</c>: per-CPU,
/// no shared line); when it is empty it charges <c>MEMCG_CHARGE_BATCH</c> = 64 pages with <c>page_counter_try_charge</c>,
/// which walks from the cgroup to the root doing an atomic add on each ancestor's <c>usage</c> (and reverts them all if
/// one exceeds its <c>max</c>), and keeps the surplus in the stock. Freeing uncharges per batch of freed folios
/// (<c>uncharge_batch</c> → <c>page_counter_uncharge</c>: the same walk with atomic subtracts). Under systemd a process
/// sits 2–3 levels deep (root → user.slice → user-1000.slice → session scope), so every refill and every freed batch is
/// 2–3 atomics on lines that every CPU of the cgroup writes.
/// </para>
/// <para>
/// The model: <see cref="Depth"/> counters, each alone on a native line; the walk is one seam-priced read-modify-write
/// per level. Only the cgroup's own (deepest) counter has a limit (<see cref="MaxPages"/>, unlimited by default): a
/// charge past it fails, reverts the levels it charged, and the fault reports out of memory (no reclaim). The stock is
/// given back when the CPU's work item ends (Linux keeps it until <c>drain_all_stock</c>; the model returns it so that
/// the counters read 0 once every page is freed). Depth 0 is off: no stock, no counters.
/// </para>
/// <para>
/// Default off (<c>MachineOptions.MemcgDepth</c> = 0): the other mm locks are on by default because every kernel has
/// them, but whether memcg charging runs depends on how the kernel is booted and the process started (the root cgroup
/// is not charged; will-it-scale run from a login shell under systemd is charged 2–3 levels deep, one run from a
/// container deeper, one run with <c>cgroup_disable=memory</c> not at all). Curves stay comparable with earlier results,
/// and a user turns it on with the depth that matches the system they compare with.
/// </para>
/// </remarks>
internal sealed unsafe class MemCgroup : IDisposable
{
    /// <summary>Linux <c>MEMCG_CHARGE_BATCH</c> (include/linux/memcontrol.h): 64 pages charged per stock refill.</summary>
    internal const int ChargeBatch = 64;

    /// <summary>The deepest hierarchy accepted.</summary>
    internal const int MaxDepth = 16;

    private readonly int _depth;
    private readonly PerCpu<Stock> _stocks;
    private readonly LockCounters _counters;

    // One native line per level: level 0 is the cgroup itself, level depth - 1 the child of the root.
    private byte* _levels;

    /// <summary>A hierarchy <paramref name="depth"/> deep (0: off) for <paramref name="cpuCount"/> CPUs.</summary>
    public MemCgroup(int cpuCount, int depth, LockCounters counters)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(depth);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(depth, MaxDepth);
        _depth = depth;
        _counters = counters;
        _stocks = new PerCpu<Stock>(cpuCount);
        int bytes = Math.Max(1, depth) * CacheLine.Size;
        _levels = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, CacheLine.Size);
        NativeMemory.Clear(_levels, (nuint)bytes);
    }

    /// <summary>Levels of page counters charged per refill (0: memcg off).</summary>
    public int Depth => _depth;

    /// <summary>The cgroup's limit in pages (Linux <c>memory.max</c>); a charge past it fails. Unlimited by default.</summary>
    public long MaxPages { get; set; } = long.MaxValue;

    /// <summary>Pages charged at <paramref name="level"/> (0 = the cgroup; a racy snapshot).</summary>
    public long Usage(int level)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(level);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(level, _depth);
        return Volatile.Read(ref Level(level));
    }

    /// <summary>Pages in CPU <paramref name="cpu"/>'s stock (owner, or a quiet machine).</summary>
    internal long StockPages(int cpu) => _stocks[cpu].Pages;

    /// <summary>
    /// Charges one page for CPU <paramref name="cpu"/> (Linux <c>mem_cgroup_charge</c>): from the stock, or by charging
    /// <see cref="ChargeBatch"/> pages up the hierarchy. False when the cgroup's limit refuses it. Code on no CPU (-1)
    /// charges the one page up the hierarchy.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryCharge(int cpu)
    {
        if (_depth == 0)
        {
            return true;
        }

        if (cpu >= 0)
        {
            ref Stock s = ref _stocks[cpu];
            if (s.Pages > 0)
            {
                s.Pages--; // consume_stock: owner-only, no shared line.
                return true;
            }
        }

        return Refill(cpu, cpu >= 0 ? ChargeBatch : 1);
    }

    /// <summary>
    /// Charges <paramref name="pages"/> pages at once, a huge page's 512 (Linux <c>mem_cgroup_charge</c> of a large
    /// folio: <c>try_charge_memcg</c> consumes the stock only for charges of at most <see cref="ChargeBatch"/> pages and
    /// otherwise charges the pages themselves up the hierarchy, leaving no surplus). False when the limit refuses it.
    /// </summary>
    internal bool TryCharge(int cpu, int pages)
    {
        if (_depth == 0)
        {
            return true;
        }

        return pages == 1 ? TryCharge(cpu) : Refill(cpu, pages, surplus: false);
    }

    /// <summary>Uncharges <paramref name="pages"/> freed pages up the hierarchy in one walk (Linux <c>uncharge_batch</c>).</summary>
    public void Uncharge(int cpu, long pages)
    {
        if (_depth == 0 || pages == 0)
        {
            return;
        }

        Walk(cpu, -pages);
    }

    /// <summary>Gives CPU <paramref name="cpu"/>'s stock back to the counters (Linux <c>drain_stock</c>); the CPU's own thread, or a quiet machine.</summary>
    public void Drain(int cpu)
    {
        if (_depth == 0)
        {
            return;
        }

        ref Stock s = ref _stocks[cpu];
        if (s.Pages != 0)
        {
            long pages = s.Pages;
            s.Pages = 0;
            Walk(cpu, -pages);
        }
    }

    /// <summary>Frees the counters' lines and the stocks.</summary>
    public void Dispose()
    {
        byte* levels = _levels;
        _levels = null;
        if (levels != null)
        {
            NativeMemory.AlignedFree(levels);
            _stocks.Dispose();
        }
    }

    /// <summary>Charges <paramref name="batch"/> pages up the hierarchy; with <paramref name="surplus"/>, all but one go to the CPU's stock.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool Refill(int cpu, long batch, bool surplus = true)
    {
        long start = VirtualTime.Timestamp();

        // page_counter_try_charge: the cgroup first, then each ancestor up to the root.
        VirtualTime.Access(_levels, LineAccess.Rmw);

        // Atomic add: the counter is shared by every CPU of the cgroup; only the sum matters (no data is published
        // with it, so no ordering is needed beyond the atomicity; a plain add would lose other CPUs' charges).
        long usage = Interlocked.Add(ref Level(0), batch);
        if (usage > MaxPages)
        {
            VirtualTime.Access(_levels, LineAccess.Rmw);
            Interlocked.Add(ref Level(0), -batch); // Revert (Linux reverts every level charged so far).
            _counters.Record(cpu, true, VirtualTime.Timestamp() - start);
            return false;
        }

        for (int level = 1; level < _depth; level++)
        {
            VirtualTime.Access(_levels + (level * CacheLine.Size), LineAccess.Rmw);
            Interlocked.Add(ref Level(level), batch); // Atomic, as above: the ancestors have no limit here.
        }

        _counters.Record(cpu, false, VirtualTime.Timestamp() - start);
        if (cpu >= 0 && surplus)
        {
            _stocks[cpu].Pages += batch - 1; // The surplus stays in the stock; one page is this charge's.
        }

        return true;
    }

    private void Walk(int cpu, long delta)
    {
        long start = VirtualTime.Timestamp();
        for (int level = 0; level < _depth; level++)
        {
            VirtualTime.Access(_levels + (level * CacheLine.Size), LineAccess.Rmw);
            Interlocked.Add(ref Level(level), delta); // Atomic, as in Refill: every CPU of the cgroup writes these lines.
        }

        _counters.Record(cpu, false, VirtualTime.Timestamp() - start);
    }

    /// <summary>What the native line at <paramref name="p"/> holds, if it is one of the hierarchy's (the simulator's line labels).</summary>
    internal string? LineLabel(byte* p) =>
        p >= _levels && p < _levels + (Math.Max(1, _depth) * CacheLine.Size) ? "memcg page counter" : null;

    private ref long Level(int level) => ref *(long*)(_levels + (level * CacheLine.Size));

    private struct Stock
    {
        public long Pages;
    }
}
