using System.Collections.Concurrent;
using SpecVm.Memory;
using SpecVm.Sync;

namespace SpecVm.Smp;

/// <summary>
/// The simulated multi-core machine: N <see cref="Cpu"/>s (each an OS thread pinned to its own core), physical memory
/// with its frame allocator, and the SRCU domain that guards VMA lifetimes.
/// </summary>
/// <remarks>
/// <para>
/// Work is given to CPUs with <see cref="Run(int, Action{Cpu})"/>, <see cref="RunAsync"/> and <see cref="RunOnAll"/>;
/// an exception on a CPU surfaces to the caller as a <see cref="CpuException"/> naming the CPU, and the CPU goes on
/// serving. An idle CPU sleeps lazy (shootdowns skip it). <see cref="Dispose"/> stops and joins every CPU thread.
/// More CPUs than cores is allowed (time-shared, like an over-committed VM).
/// </para>
/// <para>
/// Rules (each checked, with an exception thrown before anything changes): a CPU's operations run on that CPU's
/// thread, or on a thread that <see cref="Attach"/>ed it; a CPU waiting in <see cref="Run(int, Action{Cpu})"/> or
/// <see cref="RunOn"/> for other CPUs sleeps lazy (shootdowns skip it) and must not close a cycle of CPUs waiting for
/// each other; <see cref="Dispose"/> is not called on a CPU's thread nor while a CPU is attached; nothing but
/// <see cref="Dispose"/> is used after <see cref="Dispose"/>.
/// </para>
/// </remarks>
public sealed unsafe class Machine : IDisposable
{
    private readonly Cpu[] _cpus;
    private readonly Thread[] _threads;
    private readonly BlockingCollection<WorkItem>[] _queues;
    private readonly PerCpu<CounterBlock> _counters;
    private readonly PhysicalMemory _memory;
    private readonly FrameAllocator _frames;
    private readonly long _zeroPfn;
    private readonly LruVec _lru;
    private readonly MemCgroup _memcg;
    private readonly List<ILabelledLines> _labelledLines = [];
    private readonly Lock _labelledLinesLock = new();
    private readonly Srcu _srcu;
    private readonly CountdownEvent _started;
    private readonly List<string> _violations = [];
    private readonly Lock _waitGraphLock = new();
    private int _attached;
    private int _disposed;

    // Every machine of the process, for ProcessSnapshot: live ones weakly (a registry must not keep a machine alive),
    // and the final counts of disposed ones.
    private static readonly Lock RegistryLock = new();
    private static readonly List<WeakReference<Machine>> LiveMachines = [];
    private static readonly long[] RetiredCounts = new long[RegisteredCounter.Capacity];

    /// <summary>Builds a machine with default options (one CPU per usable core, 4 GiB).</summary>
    public Machine()
        : this(new MachineOptions())
    {
    }

    /// <summary>Builds a machine and starts its CPU threads.</summary>
    /// <param name="options">Sizes and behaviour; validated.</param>
    public Machine(MachineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        int n = options.CpuCount;
        System.Diagnostics.Debug.Assert((int)CpuCounter.Count <= CounterBlock.Capacity, "CounterBlock too small for CpuCounter.");
        _counters = new PerCpu<CounterBlock>(n);
        _memory = new PhysicalMemory((int)(options.MemoryBytes / PhysicalMemory.PageSize));

        // The mm locks record into each CPU's counter block (owner-only increments), at the counters named for them.
        long* blocks = (long*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _counters[0]);
        int stride = PerCpu<CounterBlock>.SlotStride / sizeof(long);
        _frames = new FrameAllocator(_memory, n, options.PcpBatch, options.PcpHigh, new LockCounters(blocks, stride, (int)CpuCounter.ZoneLockAcquisitions), options.HugePageReserve);
        _lru = new LruVec(_frames, n, options.FolioBatchSize, new LockCounters(blocks, stride, (int)CpuCounter.LruLockAcquisitions));
        _memcg = new MemCgroup(n, options.MemcgDepth, new LockCounters(blocks, stride, (int)CpuCounter.MemcgCounterWalks));

        // The shared zero page (Linux empty_zero_page / my_zero_pfn): one frame for the machine's life, never freed,
        // never map-counted, never on the LRU or charged. Zeroed here, before any CPU runs, and never written again
        // (every PTE that maps it is read-only), so the thread starts below publish its contents to every CPU.
        _zeroPfn = _frames.Allocate(-1, FrameState.ZeroPage);
        new Span<byte>(_memory.FrameData(_zeroPfn), PhysicalMemory.PageSize).Clear();
        _srcu = new Srcu(n);
        _cpus = new Cpu[n];
        TimeShared = n > Affinity.AllowedCores.Count;
        _threads = new Thread[n];
        _queues = new BlockingCollection<WorkItem>[n];
        _started = new CountdownEvent(n);
        IReadOnlyList<int> cores = Affinity.AllowedCores;
        for (int i = 0; i < n; i++)
        {
            _cpus[i] = new Cpu(this, i, (long*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _counters[i]), options.TlbEntries, options.WatchdogTimeout);
            _queues[i] = new BlockingCollection<WorkItem>(new ConcurrentQueue<WorkItem>());
        }

        for (int i = 0; i < n; i++)
        {
            int id = i;
            int core = cores[i % cores.Count];
            _threads[i] = new Thread(() => CpuLoop(id, core)) { IsBackground = true, Name = $"specvm-cpu{i}" };
            _threads[i].Start();
        }

        _started.Wait();
        lock (RegistryLock)
        {
            LiveMachines.RemoveAll(w => !w.TryGetTarget(out _));
            LiveMachines.Add(new WeakReference<Machine>(this));
        }
    }

    /// <summary>The options this machine was built with.</summary>
    public MachineOptions Options { get; }

    /// <summary>The number of CPUs.</summary>
    public int CpuCount => _cpus.Length;

    /// <summary>
    /// True when the machine has more CPUs than the process may use cores, so CPU threads share host cores: wait loops
    /// then use the short spin phase (<c>Backoff.ForLock</c>). Fixed at construction, as the affinity snapshot is.
    /// </summary>
    internal bool TimeShared { get; }

    /// <summary>The CPUs.</summary>
    public IReadOnlyList<Cpu> Cpus => _cpus;

    internal Cpu[] CpuArray => _cpus;

    /// <summary>True once <see cref="Dispose"/> has started (acquire read; a misuse check, not a synchronization).</summary>
    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>The CPU threads (for tests that check <see cref="Dispose"/> joined them).</summary>
    internal IReadOnlyList<Thread> Threads => _threads;

    /// <summary>Physical memory.</summary>
    public PhysicalMemory Memory => _memory;

    /// <summary>The frame allocator.</summary>
    internal FrameAllocator Frames => _frames;

    /// <summary>The LRU of anonymous pages, with its lock and per-CPU folio batches.</summary>
    internal LruVec Lru => _lru;

    /// <summary>The memory cgroup every anonymous page is charged to (depth 0: off).</summary>
    internal MemCgroup Memcg => _memcg;

    /// <summary>
    /// What the native line at <paramref name="p"/> holds if it is an mm lock's (zone, LRU, memcg, or a line an address
    /// space registered: its mmap lock and page-table lock), or null.
    /// </summary>
    internal string? MmLineLabel(byte* p) => _frames.LineLabel(p) ?? _lru.LineLabel(p) ?? _memcg.LineLabel(p) ?? RegisteredLineLabel(p);

    /// <summary>Registers lines for the simulator to name (an address space's lock block, until it is disposed).</summary>
    /// <param name="lines">The lines.</param>
    internal void AddLabelledLines(ILabelledLines lines)
    {
        lock (_labelledLinesLock)
        {
            _labelledLines.Add(lines);
        }
    }

    /// <summary>Forgets lines registered with <see cref="AddLabelledLines"/>.</summary>
    /// <param name="lines">The lines.</param>
    internal void RemoveLabelledLines(ILabelledLines lines)
    {
        lock (_labelledLinesLock)
        {
            _labelledLines.Remove(lines);
        }
    }

    private string? RegisteredLineLabel(byte* p)
    {
        // Asked once per line the simulator meets for the first time, never on a hot path.
        lock (_labelledLinesLock)
        {
            foreach (ILabelledLines lines in _labelledLines)
            {
                if (lines.LineLabel(p) is string label)
                {
                    return label;
                }
            }
        }

        return null;
    }

    /// <summary>
    /// Empties CPU <paramref name="cpu"/>'s per-CPU mm batches — its LRU add batch (freeing pages orphaned in it) and its
    /// memcg stock — when its work item ends; on that CPU's thread (or a quiet machine).
    /// </summary>
    internal void DrainMmBatches(int cpu)
    {
        _lru.DrainAdds(cpu);
        _lru.FinishRelease(cpu);
        _memcg.Drain(cpu);
    }

    /// <summary>
    /// The shared zero page (Linux <c>my_zero_pfn</c>): the one frame, allocated with the machine and never freed, that
    /// anonymous read faults map read-only when <c>AddressSpaceOptions.UseZeroPage</c> is on. Its state is
    /// <see cref="FrameState.ZeroPage"/> and its map count stays 0, as Linux does not count the zero page's mappings.
    /// </summary>
    internal long ZeroPfn => _zeroPfn;

    /// <summary>
    /// Protocol violations that debug checks observed (for example a lockless walker that found its page-table page
    /// freed). Empty in a correct run; checkers report it.
    /// </summary>
    public IReadOnlyList<string> Violations
    {
        get
        {
            lock (_violations)
            {
                return [.. _violations];
            }
        }
    }

    /// <summary>Records a protocol violation seen by a debug check (never throws: the run goes on to be checked).</summary>
    /// <param name="what">What was seen.</param>
    public void ReportViolation(string what)
    {
        lock (_violations)
        {
            if (_violations.Count < 1000)
            {
                _violations.Add(what);
            }
        }
    }

    /// <summary>Interleaving hooks for tests (called only in Debug builds of SpecVm).</summary>
    internal InterleavingHooks Hooks { get; } = new();

    /// <summary>The SRCU domain guarding VMA lifetimes (the speculative series' <c>vma_srcu</c>).</summary>
    public Srcu Srcu => _srcu;

    /// <summary>CPU <paramref name="id"/>.</summary>
    /// <param name="id">0 to <see cref="CpuCount"/> - 1.</param>
    public Cpu Cpu(int id)
    {
        CheckCpu(id);
        return _cpus[id];
    }

    /// <summary>
    /// Lends CPU <paramref name="cpu"/>'s identity to the calling thread until the returned scope is disposed: the
    /// CPU's own thread parks, and the caller may run operations as that CPU (for a benchmark harness that must
    /// measure on its own thread). The caller then is the CPU: it serves IPIs only at its interrupt points, so it
    /// must keep making accesses (or call <see cref="Smp.Cpu.Poll"/>) while other CPUs may shoot down its TLB.
    /// </summary>
    /// <param name="cpu">The CPU id.</param>
    /// <returns>The scope; dispose it on the same thread to give the CPU back.</returns>
    /// <exception cref="InvalidOperationException">The caller is already a CPU (its own thread, or attached).</exception>
    public CpuAttachment Attach(int cpu)
    {
        CheckCpu(cpu);
        ThrowIfDisposed();
        if (Smp.Cpu.Current != null)
        {
            throw new InvalidOperationException($"This thread already runs as CPU {Smp.Cpu.Current.Id}: a thread can be only one CPU at a time.");
        }

        var parked = new ManualResetEventSlim(false);
        var release = new ManualResetEventSlim(false);
        Task park = RunAsync(cpu, c =>
        {
            // The CPU's own thread gives up its identity and waits, not lazy: the attached thread is the CPU now
            // and serves its IPIs. The owner-only state (TLB, irq depth, counters) passes with the events' fences.
            c.UnbindCurrentThread();
            parked.Set();
            release.Wait();
            c.BindCurrentThread();
        });
        try
        {
            parked.Wait();
        }
        catch
        {
            release.Set();
            throw;
        }

        Interlocked.Increment(ref _attached); // Atomic: attachments of several CPUs may start on several threads.
        _cpus[cpu].BindCurrentThread();
        return new CpuAttachment(this, _cpus[cpu], park, parked, release);
    }

    /// <summary>Ends an attachment (called by <see cref="CpuAttachment.Dispose"/> on the attached thread).</summary>
    internal void Detach(Cpu cpu, Task park, ManualResetEventSlim release)
    {
        if (cpu.IrqDepth != 0)
        {
            throw new InvalidOperationException($"CPU {cpu.Id} is detached with interrupts disabled (depth {cpu.IrqDepth}); enable them first.");
        }

        cpu.UnbindCurrentThread();
        release.Set();
        park.GetAwaiter().GetResult();
        Interlocked.Decrement(ref _attached); // Atomic: pairs with Attach's increment; Dispose reads it.
    }

    /// <summary>Runs <paramref name="work"/> on CPU <paramref name="cpu"/> and returns when it has finished.</summary>
    /// <param name="cpu">The CPU id.</param>
    /// <param name="work">The work; it receives the CPU.</param>
    /// <remarks>
    /// Called on a CPU's thread, the calling CPU sleeps lazy while it waits (shootdowns skip it, and it catches up
    /// with missed flushes when it wakes); a call that would close a cycle of CPUs waiting for each other throws.
    /// </remarks>
    public void Run(int cpu, Action<Cpu> work)
    {
        CheckCpu(cpu);
        ArgumentNullException.ThrowIfNull(work);
        RunOn([cpu], work);
    }

    /// <summary>Runs <paramref name="work"/> on CPU <paramref name="cpu"/> and returns its result.</summary>
    /// <typeparam name="T">The result type.</typeparam>
    /// <param name="cpu">The CPU id.</param>
    /// <param name="work">The work.</param>
    public T Run<T>(int cpu, Func<Cpu, T> work)
    {
        ArgumentNullException.ThrowIfNull(work);
        T result = default!;
        Action<Cpu> action = c => result = work(c);
        Run(cpu, action);
        return result;
    }

    /// <summary>Queues <paramref name="work"/> on CPU <paramref name="cpu"/>; the task faults with <see cref="CpuException"/> if it throws.</summary>
    /// <param name="cpu">The CPU id.</param>
    /// <param name="work">The work.</param>
    public Task RunAsync(int cpu, Action<Cpu> work)
    {
        CheckCpu(cpu);
        ArgumentNullException.ThrowIfNull(work);
        // Acquire read of the disposed flag: a best-effort misuse check (use after Dispose), not a synchronization.
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var item = new WorkItem(work);
        _queues[cpu].Add(item);
        return item.Completion.Task;
    }

    /// <summary>Runs <paramref name="work"/> on every CPU at once and waits for all of them.</summary>
    /// <param name="work">The work; it receives its CPU.</param>
    public void RunOnAll(Action<Cpu> work) => RunOn(Enumerable.Range(0, CpuCount).ToArray(), work);

    /// <summary>Runs <paramref name="work"/> on each listed CPU at once and waits for all of them.</summary>
    /// <param name="cpus">CPU ids.</param>
    /// <param name="work">The work.</param>
    public void RunOn(IReadOnlyList<int> cpus, Action<Cpu> work)
    {
        ArgumentNullException.ThrowIfNull(cpus);
        ArgumentNullException.ThrowIfNull(work);
        foreach (int id in cpus)
        {
            // Checked before anything is queued, so a bad id does not leave work running on the good ones.
            CheckCpu(id);
        }

        ThrowIfDisposed();
        Cpu? caller = Smp.Cpu.Current;
        if (caller != null && !ReferenceEquals(caller.Machine, this))
        {
            caller = null; // A CPU of another machine waiting for this one: no cycle through it can form here.
        }

        if (caller != null)
        {
            if (caller.IrqDepth != 0)
            {
                throw new InvalidOperationException($"CPU {caller.Id} would wait for other CPUs with interrupts disabled (depth {caller.IrqDepth}): it could not acknowledge their shootdowns. Enable interrupts first.");
            }

            EnterWait(caller, cpus);
        }

        var tasks = new Task[cpus.Count];
        try
        {
            for (int i = 0; i < cpus.Count; i++)
            {
                tasks[i] = RunAsync(cpus[i], work);
            }

            if (caller == null)
            {
                Task.WaitAll(tasks);
            }
            else
            {
                // Sleep lazy while waiting: a CPU blocked here cannot serve IPIs, and a shootdown waiting for its ack
                // would wait for the work this CPU waits for (a deadlock when that work unmaps).
                caller.PrepareToBlock();
                try
                {
                    Task.WaitAll(tasks);
                }
                finally
                {
                    caller.FinishBlock();
                }
            }
        }
        catch (AggregateException ae)
        {
            var errors = ae.Flatten().InnerExceptions;
            if (errors.Count == 1)
            {
                throw errors[0];
            }

            throw new AggregateException($"Work failed on {errors.Count} CPUs.", errors);
        }
        finally
        {
            if (caller != null)
            {
                ExitWait(caller);
            }
        }
    }

    /// <summary>The sum of one counter over every CPU.</summary>
    /// <param name="counter">Which counter.</param>
    public long Counter(CpuCounter counter)
    {
        ThrowIfDisposed();
        long sum = 0;
        foreach (Cpu c in _cpus)
        {
            sum += c.Read(counter);
        }

        return sum;
    }

    /// <summary>The sum of one registered counter over every CPU.</summary>
    /// <param name="counter">Which counter.</param>
    public long Counter(RegisteredCounter counter)
    {
        ArgumentNullException.ThrowIfNull(counter);
        ThrowIfDisposed();
        long sum = 0;
        foreach (Cpu c in _cpus)
        {
            sum += c.Read(counter);
        }

        return sum;
    }

    /// <summary>Every counter (registered ones included) summed over CPUs.</summary>
    public CounterSnapshot Snapshot() => Snapshot(_cpus.Length);

    /// <summary>
    /// Every counter summed over every machine this process has built, live or disposed: what a benchmark harness
    /// subtracts before from after a measured phase when it cannot see the machines a benchmark builds (the
    /// BenchmarkDotNet diagnoser of the SpecVm.BenchmarkDotNet package does); registered counters included. Live machines' counters are read without
    /// stopping their CPUs, so take it while they are idle for an exact figure.
    /// </summary>
    public static CounterSnapshot ProcessSnapshot()
    {
        lock (RegistryLock)
        {
            var values = (long[])RetiredCounts.Clone();
            foreach (WeakReference<Machine> w in LiveMachines)
            {
                if (w.TryGetTarget(out Machine? m) && Volatile.Read(ref m._disposed) == 0)
                {
                    foreach (Cpu c in m._cpus)
                    {
                        for (int i = 0; i < values.Length; i++)
                        {
                            values[i] += c.ReadSlot(i); // Registered counters too.
                        }
                    }
                }
            }

            return new CounterSnapshot(values);
        }
    }

    /// <summary>Every counter summed over CPUs 0 to <paramref name="cpus"/> - 1 (a workload's tasks, without its background CPUs).</summary>
    internal CounterSnapshot Snapshot(int cpus)
    {
        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfGreaterThan(cpus, _cpus.Length);
        var values = new long[RegisteredCounter.Capacity]; // Every slot: registrations may come after this snapshot.
        foreach (Cpu c in _cpus.AsSpan(0, cpus))
        {
            for (int i = 0; i < values.Length; i++)
            {
                values[i] += c.ReadSlot(i);
            }
        }

        return new CounterSnapshot(values);
    }

    /// <summary>
    /// Stops every CPU thread (after the work already queued has run) and frees physical memory. Address spaces and
    /// files of this machine become unusable (their own <c>Dispose</c> is then a no-op). Calling it twice is fine.
    /// </summary>
    /// <exception cref="InvalidOperationException">Called on one of this machine's CPUs (it would wait for itself), or
    /// while a CPU is attached to a thread (<see cref="Attach"/>).</exception>
    public void Dispose()
    {
        Cpu? current = Smp.Cpu.Current;
        if (current != null && ReferenceEquals(current.Machine, this))
        {
            throw new InvalidOperationException($"Machine.Dispose called on CPU {current.Id}: it would wait for its own thread to stop. Dispose the machine from a thread that is none of its CPUs.");
        }

        // Acquire read: attachments end with a decrement; a machine with a parked CPU thread cannot be joined.
        if (Volatile.Read(ref _attached) != 0 && Volatile.Read(ref _disposed) == 0)
        {
            throw new InvalidOperationException("Machine.Dispose while a CPU is attached to a thread: dispose the CpuAttachment first.");
        }

        // Exchange: exactly one caller disposes; the flag also makes RunAsync refuse new work from here on.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (BlockingCollection<WorkItem> q in _queues)
        {
            q.CompleteAdding();
        }

        foreach (Thread t in _threads)
        {
            t.Join();
        }

        _srcu.Dispose();
        foreach (Cpu c in _cpus)
        {
            c.Tlb.Dispose();
        }

        // The CPU threads are joined (their batches are ordered before this by the joins): pages still in a batch (an
        // attached thread's, say) are freed before the allocator goes.
        for (int i = 0; i < _cpus.Length; i++)
        {
            DrainMmBatches(i);
        }

        _lru.Dispose();
        _memcg.Dispose();
        _frames.Dispose();
        _memory.Dispose();
        lock (RegistryLock)
        {
            // The final counts join the retired totals before the counters go (ProcessSnapshot reads under this lock
            // and skips disposed machines, so no count is seen twice or lost).
            foreach (Cpu c in _cpus)
            {
                for (int i = 0; i < RetiredCounts.Length; i++)
                {
                    RetiredCounts[i] += c.Counters[i]; // The CPU threads have stopped: plain reads of their last counts.
                }
            }

            LiveMachines.RemoveAll(w => !w.TryGetTarget(out Machine? m) || ReferenceEquals(m, this));
        }

        _counters.Dispose();
        foreach (BlockingCollection<WorkItem> q in _queues)
        {
            q.Dispose();
        }
    }

    private void CheckCpu(int id)
    {
        if ((uint)id >= (uint)_cpus.Length)
        {
            throw new ArgumentOutOfRangeException("cpu", id, $"CPU id must be in 0..{_cpus.Length - 1}.");
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, this);

    /// <summary>
    /// Records that <paramref name="caller"/> waits for <paramref name="targets"/>, unless that closes a cycle of CPUs
    /// waiting for each other's queues (a deadlock: each waits for work queued behind the other's current work).
    /// </summary>
    private void EnterWait(Cpu caller, IReadOnlyList<int> targets)
    {
        lock (_waitGraphLock)
        {
            var seen = new HashSet<int>();
            var stack = new Stack<(int Cpu, string Path)>();
            foreach (int t in targets)
            {
                stack.Push((t, $"CPU {caller.Id} -> CPU {t}"));
            }

            while (stack.Count > 0)
            {
                (int at, string path) = stack.Pop();
                if (at == caller.Id)
                {
                    throw new InvalidOperationException($"Machine.Run would deadlock: {path} (each waits for work queued behind the other's). Use RunAsync and do not wait, or run the work directly.");
                }

                if (!seen.Add(at) || _cpus[at].WaitingFor is not int[] next)
                {
                    continue;
                }

                foreach (int n in next)
                {
                    stack.Push((n, $"{path} -> CPU {n}"));
                }
            }

            caller.WaitingFor = [.. targets];
        }
    }

    private void ExitWait(Cpu caller)
    {
        lock (_waitGraphLock)
        {
            caller.WaitingFor = null;
        }
    }

    private void CpuLoop(int id, int core)
    {
        Cpu cpu = _cpus[id];
        cpu.ThreadId = Environment.CurrentManagedThreadId;
        cpu.BindCurrentThread();
        if (Options.Pin && Affinity.TryPinCurrentThread(core) == PinResult.Pinned)
        {
            cpu.Core = core;
        }

        _started.Signal();
        BlockingCollection<WorkItem> queue = _queues[id];
        while (true)
        {
            // Idle: sleep lazy, so shootdowns skip this CPU; catch up with missed flushes on wake.
            cpu.PrepareToBlock();
            bool got = queue.TryTake(out WorkItem? item, Timeout.Infinite);
            if (!got || item == null)
            {
                // The machine is being disposed: leave for good, still lazy, so that a shootdown another CPU is
                // running right now stops waiting for this CPU's ack instead of waiting forever.
                cpu.GoOffline();
                return;
            }

            cpu.FinishBlock();

            try
            {
                item.Work(cpu);
                if (cpu.IrqDepth != 0)
                {
                    int depth = cpu.IrqDepth;
                    cpu.ResetIrqStateAfterFailure();
                    throw new InvalidOperationException($"Work returned with interrupts disabled (depth {depth}).");
                }

                // Before the completion: whoever waits for this work sees its pages out of this CPU's batches.
                DrainMmBatches(id);
                item.Completion.SetResult();
            }
            catch (Exception ex)
            {
                cpu.ResetIrqStateAfterFailure();
                DrainAfterFailure(id);
                item.Completion.SetException(new CpuException(id, ex));
            }
        }
    }

    /// <summary>Drains after failed work; a second failure there is reported with the first, not instead of it.</summary>
    private void DrainAfterFailure(int id)
    {
        try
        {
            DrainMmBatches(id);
        }
        catch (Exception ex)
        {
            ReportViolation($"CPU {id}: draining the mm batches after failed work threw {ex.GetType().Name}: {ex.Message}");
        }
    }

    private sealed class WorkItem(Action<Cpu> work)
    {
        public Action<Cpu> Work { get; } = work;

        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private struct CounterBlock
    {
        // Room for every CpuCounter (asserted in the constructor) and the registered counters, whole cache lines:
        // 1 KiB per CPU.
        public const int Capacity = RegisteredCounter.Capacity;

        public fixed long Values[Capacity];
    }
}

/// <summary>Counters summed over CPUs at one moment.</summary>
public sealed class CounterSnapshot
{
    private readonly long[] _values;

    internal CounterSnapshot(long[] values) => _values = values;

    /// <summary>One counter's total.</summary>
    /// <param name="counter">Which counter.</param>
    public long this[CpuCounter counter] => _values[(int)counter];

    /// <summary>One registered counter's total.</summary>
    /// <param name="counter">Which counter.</param>
    public long this[RegisteredCounter counter] => _values[(counter ?? throw new ArgumentNullException(nameof(counter))).Index];

    /// <summary>The difference <c>this - earlier</c>, counter by counter.</summary>
    /// <param name="earlier">An earlier snapshot of the same machine.</param>
    public CounterSnapshot Minus(CounterSnapshot earlier)
    {
        ArgumentNullException.ThrowIfNull(earlier);
        var d = new long[_values.Length];
        for (int i = 0; i < d.Length; i++)
        {
            d[i] = _values[i] - earlier._values[i];
        }

        return new CounterSnapshot(d);
    }

    /// <summary>Every <see cref="CpuCounter"/> as name → value (registered counters are read by their owners' declarations).</summary>
    public IReadOnlyDictionary<string, long> ToDictionary()
    {
        var d = new Dictionary<string, long>();
        for (int i = 0; i < (int)CpuCounter.Count; i++)
        {
            d[((CpuCounter)i).ToString()] = _values[i];
        }

        return d;
    }
}
