using System.Collections.Concurrent;
using SpecVm.Memory;
using SpecVm.Sync;

namespace SpecVm.Smp;

/// <summary>
/// The simulated multi-core machine: N <see cref="Cpu"/>s (each an OS thread pinned to its own core), physical memory
/// with its frame allocator, and the SRCU domain that guards VMA lifetimes.
/// </summary>
/// <remarks>
/// Work is given to CPUs with <see cref="Run(int, Action{Cpu})"/>, <see cref="RunAsync"/> and <see cref="RunOnAll"/>;
/// an exception on a CPU surfaces to the caller as a <see cref="CpuException"/> naming the CPU, and the CPU goes on
/// serving. An idle CPU sleeps lazy (shootdowns skip it). <see cref="Dispose"/> stops and joins every CPU thread.
/// More CPUs than cores is allowed (time-shared, like an over-committed VM).
/// </remarks>
public sealed unsafe class Machine : IDisposable
{
    private readonly Cpu[] _cpus;
    private readonly Thread[] _threads;
    private readonly BlockingCollection<WorkItem>[] _queues;
    private readonly PerCpu<CounterBlock> _counters;
    private readonly PhysicalMemory _memory;
    private readonly FrameAllocator _frames;
    private readonly Srcu _srcu;
    private readonly CountdownEvent _started;
    private readonly List<string> _violations = [];
    private int _disposed;

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
        _memory = new PhysicalMemory((int)(options.MemoryBytes / PhysicalMemory.PageSize));
        _frames = new FrameAllocator(_memory, n);
        _srcu = new Srcu(n);
        _counters = new PerCpu<CounterBlock>(n);
        _cpus = new Cpu[n];
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
    }

    /// <summary>The options this machine was built with.</summary>
    public MachineOptions Options { get; }

    /// <summary>The number of CPUs.</summary>
    public int CpuCount => _cpus.Length;

    /// <summary>The CPUs.</summary>
    public IReadOnlyList<Cpu> Cpus => _cpus;

    internal Cpu[] CpuArray => _cpus;

    /// <summary>The CPU threads (for tests that check <see cref="Dispose"/> joined them).</summary>
    internal IReadOnlyList<Thread> Threads => _threads;

    /// <summary>Physical memory.</summary>
    public PhysicalMemory Memory => _memory;

    /// <summary>The frame allocator.</summary>
    public FrameAllocator Frames => _frames;

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
    public Diagnostics.InterleavingHooks Hooks { get; } = new();

    /// <summary>The SRCU domain guarding VMA lifetimes (the speculative series' <c>vma_srcu</c>).</summary>
    public Srcu Srcu => _srcu;

    /// <summary>CPU <paramref name="id"/>.</summary>
    /// <param name="id">0 to <see cref="CpuCount"/> - 1.</param>
    public Cpu Cpu(int id)
    {
        CheckCpu(id);
        return _cpus[id];
    }

    /// <summary>Runs <paramref name="work"/> on CPU <paramref name="cpu"/> and returns when it has finished.</summary>
    /// <param name="cpu">The CPU id.</param>
    /// <param name="work">The work; it receives the CPU.</param>
    public void Run(int cpu, Action<Cpu> work)
    {
        CheckCpu(cpu);
        CheckNotWaitingOnItself(cpu);
        try
        {
            RunAsync(cpu, work).GetAwaiter().GetResult();
        }
        catch (CpuException)
        {
            throw;
        }
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
        foreach (int id in cpus)
        {
            // Checked before anything is queued, so a bad id does not leave work running on the good ones.
            CheckCpu(id);
            CheckNotWaitingOnItself(id);
        }

        var tasks = new Task[cpus.Count];
        for (int i = 0; i < cpus.Count; i++)
        {
            tasks[i] = RunAsync(cpus[i], work);
        }

        try
        {
            Task.WaitAll(tasks);
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
    }

    /// <summary>The sum of one counter over every CPU.</summary>
    /// <param name="counter">Which counter.</param>
    public long Counter(CpuCounter counter)
    {
        long sum = 0;
        foreach (Cpu c in _cpus)
        {
            sum += c.Read(counter);
        }

        return sum;
    }

    /// <summary>Every counter summed over CPUs.</summary>
    public CounterSnapshot Snapshot()
    {
        var values = new long[(int)CpuCounter.Count];
        foreach (Cpu c in _cpus)
        {
            for (int i = 0; i < values.Length; i++)
            {
                values[i] += c.Read((CpuCounter)i);
            }
        }

        return new CounterSnapshot(values);
    }

    /// <summary>Stops every CPU thread (after the work already queued) and frees physical memory.</summary>
    public void Dispose()
    {
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

        _frames.Dispose();
        _memory.Dispose();
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

    /// <summary>A CPU's thread waiting for work queued to that same CPU would wait forever: fail instead.</summary>
    private void CheckNotWaitingOnItself(int id)
    {
        if (_cpus[id].ThreadId == Environment.CurrentManagedThreadId)
        {
            throw new InvalidOperationException($"CPU {id} would wait for work queued to itself (a deadlock): call the work directly, or use RunAsync.");
        }
    }

    private void CpuLoop(int id, int core)
    {
        Cpu cpu = _cpus[id];
        cpu.ThreadId = Environment.CurrentManagedThreadId;
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
            cpu.FinishBlock();
            if (!got || item == null)
            {
                cpu.SwitchToNone();
                return;
            }

            try
            {
                item.Work(cpu);
                if (cpu.IrqDepth != 0)
                {
                    int depth = cpu.IrqDepth;
                    cpu.ResetIrqStateAfterFailure();
                    throw new InvalidOperationException($"Work returned with interrupts disabled (depth {depth}).");
                }

                item.Completion.SetResult();
            }
            catch (Exception ex)
            {
                cpu.ResetIrqStateAfterFailure();
                item.Completion.SetException(new CpuException(id, ex));
            }
        }
    }

    private sealed class WorkItem(Action<Cpu> work)
    {
        public Action<Cpu> Work { get; } = work;

        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private struct CounterBlock
    {
        public fixed long Values[64];
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

    /// <summary>Every counter as name → value.</summary>
    public IReadOnlyDictionary<string, long> ToDictionary()
    {
        var d = new Dictionary<string, long>();
        for (int i = 0; i < _values.Length; i++)
        {
            d[((CpuCounter)i).ToString()] = _values[i];
        }

        return d;
    }
}
