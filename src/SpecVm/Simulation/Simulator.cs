using System.Diagnostics;
using System.Text;
using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Simulation;

/// <summary>
/// A deterministic virtual-time run of one <see cref="Machine"/>'s CPUs (docs/design.md §6): every CPU's thread runs
/// the real protocol code, but only one runs at a time — the one with the smallest virtual clock (ties by CPU id) —
/// and it yields at the seam's events (<see cref="VirtualTime"/>) once it is more than a quantum ahead of the next.
/// Its clock advances by the <see cref="CostModel"/>'s price of each event, never by host time, so the same machine,
/// workload and model give the same result on any host.
/// </summary>
/// <remarks>
/// <para>
/// Use: build the machine and set the workload up as usual (outside the simulation), create the simulator, then run on
/// each participating CPU <see cref="Run"/> with that CPU's loop. The simulation starts when every participant has
/// entered. A CPU's loop reads <see cref="Now"/> to know when to stop.
/// </para>
/// <para>
/// Waits never block a host thread: a CPU that spins or sleeps on a line parks until another CPU writes the line (or an
/// IPI arrives, if its interrupts are on, or a bounded poll step passes), and its clock moves to the write plus the
/// transfer (spinning) or the wake-up latency (sleeping). When no CPU can run the simulation has deadlocked, and every
/// CPU's <see cref="Run"/> throws <see cref="SimulatedDeadlockException"/> naming each CPU's state.
/// </para>
/// </remarks>
internal sealed unsafe class Simulator : IDisposable
{
    /// <summary>Picoseconds per nanosecond: clocks are whole picoseconds, so every sum is exact and host-independent.</summary>
    internal const long PsPerNs = 1000;

    private readonly Machine _machine;
    private readonly SimCpu[] _cpus;
    private readonly ulong _participants;
    private readonly long _quantumPs;
    private readonly Dictionary<(object?, nint), Line> _lines = [];
    private readonly Calendar[] _sockets;
    private readonly Lock _enterLock = new();
    private readonly ManualResetEventSlim _finished = new(false);
    private int _entered;
    private int _live;
    private SimulatedDeadlockException? _failure;
    private long _events;
    private long _switches;
    private bool _disposed;

    /// <summary>Prepares a simulation of the CPUs in <paramref name="participants"/>.</summary>
    /// <param name="machine">The machine whose CPUs run.</param>
    /// <param name="model">The cost model (validated).</param>
    /// <param name="participants">Bit mask of the CPUs that will call <see cref="Run"/>.</param>
    /// <param name="quantum">How far a CPU may run ahead of the next before it yields (zero: exact order at every event).</param>
    public Simulator(Machine machine, CostModel model, ulong participants, TimeSpan quantum)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(model);
        model.Validate();
        if (participants == 0 || (machine.CpuCount < 64 && participants >> machine.CpuCount != 0))
        {
            throw new ArgumentOutOfRangeException(nameof(participants), participants, "The participants must be a non-empty set of the machine's CPUs.");
        }

        if (quantum < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(quantum), quantum, "The quantum must not be negative.");
        }

        _machine = machine;
        Model = model;
        _participants = participants;
        _quantumPs = (long)(quantum.Ticks * 100_000L);
        _cpus = new SimCpu[machine.CpuCount];
        for (int i = 0; i < _cpus.Length; i++)
        {
            _cpus[i] = new SimCpu(this, machine.CpuArray[i]);
        }

        _sockets = new Calendar[model.Sockets];
        for (int i = 0; i < _sockets.Length; i++)
        {
            _sockets[i] = new Calendar();
        }

        _live = System.Numerics.BitOperations.PopCount(participants);
        VirtualTime.Started();
    }

    /// <summary>The cost model.</summary>
    public CostModel Model { get; }

    // Acquire reads (Events, Switches): the counts are written by whichever CPU thread runs (one at a time); read during a
    // run they are an untorn snapshot, read after it (the tasks' completion fenced) they are exact.

    /// <summary>Seam events priced so far (a speed statistic).</summary>
    public long Events => Volatile.Read(ref _events);

    /// <summary>Hand-offs between host threads so far (a speed statistic).</summary>
    public long Switches => Volatile.Read(ref _switches);

    /// <summary>CPU <paramref name="cpu"/>'s virtual clock, in nanoseconds (read it on that CPU, or after the run).</summary>
    /// <param name="cpu">The CPU id.</param>
    public double Now(int cpu) => _cpus[cpu].Now / (double)PsPerNs;

    /// <summary>The largest clock of any CPU, in nanoseconds (after the run: the simulated time it took).</summary>
    public double Elapsed => _cpus.Max(c => c.Now) / (double)PsPerNs;

    /// <summary>
    /// Runs <paramref name="loop"/> as simulated CPU <paramref name="cpu"/>; call on that CPU's thread. Waits for every
    /// participant to enter, runs in virtual time, and leaves the simulation (lazy, like an idle CPU) when the loop returns.
    /// </summary>
    /// <param name="cpu">The CPU (the calling thread's own).</param>
    /// <param name="loop">The CPU's work; it should stop when <see cref="Now"/> passes its end.</param>
    /// <exception cref="SimulatedDeadlockException">The simulation deadlocked.</exception>
    public void Run(Cpu cpu, Action loop)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(loop);
        if (!ReferenceEquals(cpu.Machine, _machine) || (_participants & (1UL << cpu.Id)) == 0 || !cpu.IsCurrentThread)
        {
            throw new InvalidOperationException($"CPU {cpu.Id} is not a participant of this simulation running on its own thread.");
        }

        SimCpu me = _cpus[cpu.Id];
        me.Enter();
        try
        {
            lock (_enterLock)
            {
                if (me.State != SimState.Idle)
                {
                    throw new InvalidOperationException($"CPU {cpu.Id} entered the simulation twice.");
                }

                me.State = SimState.Runnable;
                if (++_entered == _live)
                {
                    // Everyone is here: the first to run is the smallest id (all clocks are 0).
                    SimCpu first = _cpus.First(c => c.State == SimState.Runnable);
                    first.Gate.Set();
                }
            }

            me.Gate.Wait();
            me.Gate.Reset();
            ThrowIfFailed();
            loop();

            // Still in virtual time: the CPU's LRU batch and memcg stock empty at a deterministic point of the run (the
            // machine's CPU loop would do it after the simulation, racing the other simulated CPUs in host time).
            _machine.DrainMmBatches(cpu.Id);
        }
        catch (Exception e) when (e is not SimulatedDeadlockException)
        {
            // One CPU's failure ends the simulation: the others may wait for what it held, forever.
            Fail(me, $"CPU {me.Id} failed: {e.GetType().Name}: {e.Message}");
            throw;
        }
        finally
        {
            Leave(me);
        }
    }

    /// <summary>Spends <paramref name="ns"/> of local work on <paramref name="cpu"/> (a workload's own computation).</summary>
    /// <param name="cpu">The CPU (the calling thread's own).</param>
    /// <param name="ns">Nanoseconds, 0 or more.</param>
    public void Spend(Cpu cpu, double ns)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ns);
        SimCpu me = _cpus[cpu.Id];
        me.ChargeLocal();
        me.Now += (long)(ns * PsPerNs);
    }

    /// <summary>Called by a running CPU's loop between batches: charges its local work and yields if it is ahead.</summary>
    /// <param name="cpu">The CPU.</param>
    /// <returns>Its clock, in nanoseconds.</returns>
    public double Checkpoint(Cpu cpu)
    {
        SimCpu me = _cpus[cpu.Id];
        me.ChargeLocal();
        Schedule(me);
        return me.Now / (double)PsPerNs;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        VirtualTime.Stopped();
        _machine.Srcu.ReleaseHeld();
        _finished.Dispose();
        foreach (SimCpu c in _cpus)
        {
            c.Gate.Dispose();
        }
    }

    /// <summary>The line of (owner, slot): created on first use.</summary>
    internal Line LineOf(object? owner, nint slot)
    {
        if (!_lines.TryGetValue((owner, slot), out Line? line))
        {
            line = new Line { Label = Classify(owner, slot) };
            _lines.Add((owner, slot), line);
        }

        return line;
    }

    /// <summary>
    /// Forgets the accesses priced so far (the tally of <see cref="LineTally"/> starts again from zero); the lines keep
    /// their holders and history, so prices do not change. For a window that opens at a region of interest.
    /// </summary>
    internal void ResetLineTally()
    {
        foreach (Line line in _lines.Values)
        {
            line.Loads = line.Stores = line.Rmws = 0;
            line.Transfers = 0;
        }
    }

    /// <summary>
    /// Every priced access so far, summed by what the line holds (the mmap lock's count, a VMA's sequence count, a PTE,
    /// a PTL…): loads, stores, read-modify-writes, and the expected transfers among them (accesses that found the line in
    /// another CPU's cache). Private lines count too: a PTE only this CPU touches is an access without transfers.
    /// Read once the CPUs have finished.
    /// </summary>
    internal SortedDictionary<string, LineOps> LineTally()
    {
        var tally = new SortedDictionary<string, LineOps>(StringComparer.Ordinal);
        foreach (Line line in _lines.Values)
        {
            if (line.Loads + line.Stores + line.Rmws == 0)
            {
                continue; // Only waited on.
            }

            LineOps t = tally.GetValueOrDefault(line.Label);
            tally[line.Label] = new LineOps(t.Lines + 1, t.Loads + line.Loads, t.Stores + line.Stores, t.Rmws + line.Rmws, t.Transfers + line.Transfers);
        }

        return tally;
    }

    /// <summary>The name of what (owner, slot) holds, in the kernel's terms.</summary>
    private string Classify(object? owner, nint slot)
    {
        switch (owner)
        {
            case Mm.Vma:
                return slot switch
                {
                    Mm.Vma.LineSeq => "VMA sequence count",
                    Mm.Vma.LineLockSeq => "VMA lock sequence",
                    Mm.Vma.LineReaders => "VMA reader count (vm_refcnt)",
                    Mm.Vma.LineRefs => "VMA refcount",
                    _ => $"VMA line {slot}",
                };
            case Mm.VmaIndex:
                return "VMA tree root";
            case TlbContext:
                return "mm TLB generation";
            case null:
                // The seam passes native (and pinned) lines as address / 64: the mmap lock's count and the page-table
                // lock are named by the address space that placed them (Machine.MmLineLabel).
                byte* p = (byte*)(slot << 6);
                Memory.PhysicalMemory memory = _machine.Memory;
                return memory.InArena(p) ? "PTE" : memory.InFrameTable(p) ? "PTL (split page-table lock)" : _machine.MmLineLabel(p) ?? "per-CPU line (SRCU counter)";
            case Memory.PhysicalMemory:
                return "struct page (frame metadata)";
            default:
                return slot == 0 ? owner.GetType().Name : $"{owner.GetType().Name} line {slot}";
        }
    }

    /// <summary>
    /// Prices <paramref name="kind"/> on <paramref name="line"/> for <paramref name="me"/> at its clock and records it.
    /// </summary>
    /// <remarks>
    /// While one CPU alone uses a line it hits. Once a second CPU touches it, the line keeps a history of which CPUs
    /// read and wrote it in each 250 ns of virtual time, and an access is a hit only if no other CPU wrote it (for a
    /// load) or touched it (for a store or read-modify-write) between this CPU's previous access and now, in virtual
    /// time. So the price follows the virtual interleaving, not the host order in which CPUs happened to run their
    /// quanta (in which a CPU would keep a hot line for a whole turn).
    /// </remarks>
    internal long Price(SimCpu me, Line line, LineAccess kind)
    {
        CostModel m = Model;
        int id = me.Id;
        ulong bit = 1UL << id;
        bool write = kind != LineAccess.Load;
        long now = me.Now;
        LineHistory? h = line.History;
        switch (kind)
        {
            case LineAccess.Load: line.Loads++; break;
            case LineAccess.Store: line.Stores++; break;
            default: line.Rmws++; break;
        }

        if (h == null)
        {
            ulong holders = line.Sharers | (line.Owner >= 0 ? 1UL << line.Owner : 0);
            if (holders == 0 || holders == bit)
            {
                // Private so far: the first touch comes from memory, later ones hit.
                bool first = holders == 0;
                line.Owner = write || first ? id : line.Owner;
                line.Sharers = write ? 0 : line.Sharers | bit;
                double privateNs = first ? m.MemoryNs : kind == LineAccess.Rmw ? m.LocalAtomicNs : m.LocalHitNs;
                line.FirstToucher = first ? id : line.FirstToucher;
                line.FirstTouch = first ? now : line.FirstTouch;
                return (long)(privateNs * PsPerNs);
            }

            // A second CPU: start the history with the first CPU's last known touch.
            h = line.History = new LineHistory();
            h.Record(line.FirstTouch, line.FirstToucher, write: true);
        }

        long previous = h.Last[id];
        ulong others = h.TouchedBetween(previous, now, write) & ~bit;
        double hitNs = kind == LineAccess.Rmw ? m.LocalAtomicNs : m.LocalHitNs;
        double ns;

        // The chance that another CPU took the line since our previous access. Seen directly when the others' accesses
        // in between have run already (host order); otherwise estimated from the line's recent foreign traffic, because
        // CPUs behind us in virtual time have not run yet: with rate λ and a gap d, p = λd / (1 + λd) (a rational
        // stand-in for 1 - e^-λd that is exact in IEEE arithmetic on every host).
        double p;
        if (previous < 0 || others != 0)
        {
            p = 1;
        }
        else
        {
            double x = h.ForeignRate(now, id, write) * ((now - previous) / (double)PsPerNs);
            p = x / (1 + x);
        }

        if (others == 0)
        {
            others = h.Recent & ~bit; // The CPUs that touched it lately: where the line comes from.
        }

        double transferNs = others == 0 ? m.MemoryNs : m.TransferNs(write ? Farthest(others, id) : Nearest(others, id), id);
        if (kind == LineAccess.Rmw)
        {
            transferNs += m.LocalAtomicNs;
        }

        ns = hitNs + (p * (transferNs - hitNs));
        line.Transfers += p;
        h.Record(now, id, write);
        long ps = (long)(ns * PsPerNs);
        if (kind == LineAccess.Rmw && p > 0)
        {
            // Read-modify-writes on one line serialise: the line is busy for the (expected) transfer.
            line.Busy ??= new Calendar();
            long done = line.Busy.Reserve(now, ps);
            ps = Math.Max(ps, done - now);
        }

        return ps;
    }

    /// <summary>Wakes the CPUs parked on <paramref name="line"/> after <paramref name="waker"/> wrote it at <paramref name="at"/>.</summary>
    internal void WakeAll(Line line, SimCpu waker, long at)
    {
        List<SimCpu>? waiters = line.Waiters;
        if (waiters == null || waiters.Count == 0)
        {
            return;
        }

        // Detach the list first: Wake would otherwise remove each waiter from the list being walked.
        line.Waiters = null;
        foreach (SimCpu w in waiters)
        {
            double ns = w.ParkSleeping ? Model.WakeLatencyNs : Model.TransferNs(waker.Id, w.Id);
            w.Wake(at + (long)(ns * PsPerNs));
        }

        waiters.Clear();
        line.Waiters ??= waiters; // Reuse the list (no allocation per wake).
    }

    /// <summary>Prices a page kernel at the socket's memory bandwidth.</summary>
    internal long PricePageKernel(SimCpu me, double coreNs)
    {
        long core = (long)(coreNs * PsPerNs);
        long busy = (long)(4096.0 / Model.SocketBandwidthGBps * PsPerNs); // bytes / (bytes per ns)
        long done = _sockets[Model.SocketOf(me.Id)].Reserve(me.Now, busy);
        return Math.Max(core, done - me.Now);
    }

    internal void CountEvent() => _events++;

    /// <summary>An IPI for <paramref name="target"/> arrives at <paramref name="at"/>.</summary>
    internal void Deliver(int target, long at) => _cpus[target].Deliver(at);

    /// <summary><paramref name="from"/> acked <paramref name="sender"/>'s IPI: a sender polling for acks sees it one transfer later.</summary>
    internal void RingDoorbell(int sender, SimCpu from) => WakeAll(_cpus[sender].Doorbell, from, from.Now);

    /// <summary>
    /// The scheduling point after an event of <paramref name="me"/> (running, or just parked): keeps running while it is
    /// within a quantum of the earliest other CPU, else hands over to that CPU and waits for its own turn.
    /// </summary>
    internal void Schedule(SimCpu me)
    {
        // The earliest other CPU, cached between hand-offs: only the runner's own clock moves while it runs, except
        // for CPUs it wakes (NoteRunnable keeps the cache right), so the scan runs once per turn, not per event.
        if (_minFor != me)
        {
            RecomputeMin(me);
        }

        SimCpu? next = _minCpu;
        long nextKey = _minKey;
        if (me.State == SimState.Runnable)
        {
            if (next == null || me.Now < nextKey + _quantumPs || (me.Now == nextKey + _quantumPs && me.Id < next.Id))
            {
                return; // Still the earliest (within the quantum): run on.
            }
        }
        else if (next == null)
        {
            Fail(me, "every CPU is waiting and none can run");
            ThrowIfFailed();
            return;
        }

        if (next!.State == SimState.Parked)
        {
            next.Wake(next.Deadline); // Its poll step ran out: it looks again.
        }

        _minFor = null;
        _switches++;
        next.Gate.Set();
        me.Gate.Wait();
        me.Gate.Reset();
        ThrowIfFailed();
    }

    private SimCpu? _minFor;
    private SimCpu? _minCpu;
    private long _minKey;

    private void RecomputeMin(SimCpu me)
    {
        SimCpu? next = null;
        long nextKey = long.MaxValue;
        foreach (SimCpu c in _cpus)
        {
            if (c == me)
            {
                continue;
            }

            long key = c.State switch
            {
                SimState.Runnable => c.Now,
                SimState.Parked => c.Deadline,
                _ => long.MaxValue,
            };
            if (key < nextKey || (key == nextKey && next != null && c.Id < next.Id))
            {
                nextKey = key;
                next = c;
            }
        }

        _minFor = me;
        _minCpu = next;
        _minKey = nextKey;
    }

    /// <summary>A CPU became runnable (woken) at its clock: the runner's cached earliest-other may change.</summary>
    internal void NoteRunnable(SimCpu c)
    {
        if (_minFor != null && c != _minFor && (c.Now < _minKey || (c.Now == _minKey && (_minCpu == null || c.Id < _minCpu.Id) ) || c == _minCpu))
        {
            if (c == _minCpu && c.Now > _minKey)
            {
                _minFor = null; // Its key grew: rescan next time.
                return;
            }

            _minKey = c.Now;
            _minCpu = c;
        }
    }

    private void Leave(SimCpu me)
    {
        if (me.Cpu.IrqsDisabled)
        {
            me.Cpu.ResetIrqStateAfterFailure(); // The loop left by an exception inside an irqs-off section.
        }

        me.Cpu.PrepareToBlock(); // Idle from now on, deterministically: shootdowns skip it.
        me.Leave();
        bool last;
        lock (_enterLock)
        {
            me.State = SimState.Done;
            last = --_live == 0;
        }

        if (last)
        {
            _finished.Set();
            return;
        }

        if (_failure != null)
        {
            return;
        }

        // Hand over to the earliest CPU left (a parked one with a deadline counts at its deadline).
        SimCpu? next = null;
        long nextKey = long.MaxValue;
        foreach (SimCpu c in _cpus)
        {
            long key = c.State == SimState.Runnable ? c.Now : c.State == SimState.Parked ? c.Deadline : long.MaxValue;
            if (key < nextKey)
            {
                nextKey = key;
                next = c;
            }
        }

        if (next == null)
        {
            if (_cpus.Any(c => c.State is SimState.Parked or SimState.Idle))
            {
                Fail(me, $"CPU {me.Id} finished and the CPUs left are all waiting");
            }

            return;
        }

        if (next.State == SimState.Parked)
        {
            next.Wake(next.Deadline);
        }

        _switches++;
        next.Gate.Set();
    }

    /// <summary>Records a deadlock with every CPU's state and releases every waiting thread to throw it.</summary>
    internal void Fail(SimCpu at, string why)
    {
        if (_failure != null)
        {
            return;
        }

        var sb = new StringBuilder();
        sb.Append(CultureInfoInvariant($"Simulated deadlock at {at.Now / (double)PsPerNs:F0} ns on CPU {at.Id}: {why}. CPU states:"));
        foreach (SimCpu c in _cpus)
        {
            if ((_participants & (1UL << c.Id)) != 0)
            {
                sb.Append(CultureInfoInvariant($" CPU {c.Id} {c.Describe()};"));
            }
        }

        _failure = new SimulatedDeadlockException(sb.ToString());
        foreach (SimCpu c in _cpus)
        {
            c.Gate.Set();
        }
    }

    private void ThrowIfFailed()
    {
        if (_failure != null)
        {
            // Every thread leaves by the same exception; the seams on the way out (finally blocks) find no context.
            VirtualTime.Bind(null);
            throw new SimulatedDeadlockException(_failure.Message);
        }
    }

    private static string CultureInfoInvariant(FormattableString s) => FormattableString.Invariant(s);

    private int Nearest(ulong mask, int to)
    {
        int best = -1;
        double bestNs = double.MaxValue;
        while (mask != 0)
        {
            int c = System.Numerics.BitOperations.TrailingZeroCount(mask);
            mask &= mask - 1;
            double ns = Model.TransferNs(c, to);
            if (ns < bestNs)
            {
                bestNs = ns;
                best = c;
            }
        }

        return best;
    }

    private int Farthest(ulong mask, int to)
    {
        int best = -1;
        double bestNs = -1;
        while (mask != 0)
        {
            int c = System.Numerics.BitOperations.TrailingZeroCount(mask);
            mask &= mask - 1;
            double ns = Model.TransferNs(c, to);
            if (ns > bestNs)
            {
                bestNs = ns;
                best = c;
            }
        }

        return best;
    }
}

/// <summary>The accesses to the lines of one kind (<see cref="Simulator.LineTally"/>).</summary>
/// <param name="Lines">Distinct lines.</param>
/// <param name="Loads">Loads.</param>
/// <param name="Stores">Stores.</param>
/// <param name="Rmws">Read-modify-writes (atomics, lock acquisitions).</param>
/// <param name="Transfers">Expected accesses that found the line in another CPU's cache.</param>
internal readonly record struct LineOps(int Lines, long Loads, long Stores, long Rmws, double Transfers);
