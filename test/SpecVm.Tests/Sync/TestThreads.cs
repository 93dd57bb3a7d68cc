using System.Diagnostics;
using System.Runtime.ExceptionServices;
using SpecVm.Sync;

namespace SpecVm.Tests.Sync;

/// <summary>The collection that the thread-heavy Sync tests share: xunit runs it alone, after the parallel tests.</summary>
/// <remarks>
/// The machine these tests run on may have two shared cores; a stress test that competes with other stress tests for
/// them measures the scheduler, not the primitive. Running them one at a time keeps each one's bound meaningful.
/// </remarks>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class StressCollection
{
    /// <summary>The collection name.</summary>
    public const string Name = "Sync stress (runs alone)";
}

/// <summary>Small helpers for tests that run real threads.</summary>
internal static class TestThreads
{
    /// <summary>
    /// The longest any single wait in these tests may take before it counts as a hang: 10 s, far above the ~0.2 s these
    /// waits take, because a 2-core host shared with other builds stalled a 2 s bound (a real hang still fails).
    /// </summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    /// <summary>Issues <paramref name="pauses"/> x86 PAUSE hints: a spin of a few nanoseconds each.</summary>
    public static void Spin(int pauses)
    {
        for (int i = 0; i < pauses; i++)
        {
            CpuRelax.Pause();
        }
    }

    /// <summary>Polls <paramref name="condition"/> until it holds or <paramref name="bound"/> passes.</summary>
    public static bool SpinUntil(Func<bool> condition, TimeSpan bound)
    {
        var sw = Stopwatch.StartNew();
        int round = 0;
        while (!condition())
        {
            if (sw.Elapsed > bound)
            {
                return false;
            }

            if (++round % 64 == 0)
            {
                Thread.Sleep(1);
            }
            else
            {
                Thread.Yield();
            }
        }

        return true;
    }
}

/// <summary>A background thread whose exception, if any, is rethrown on the test thread when it is joined.</summary>
internal sealed class TestThread
{
    private readonly Thread _thread;
    private Exception? _failure;

    /// <summary>Starts <paramref name="body"/> on a new background thread.</summary>
    public TestThread(string name, Action body)
    {
        _thread = new Thread(() =>
        {
            try
            {
                body();
            }
            catch (Exception e)
            {
                _failure = e;
            }
        })
        { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>The thread's name.</summary>
    public string Name => _thread.Name!;

    /// <summary>True once the thread has finished.</summary>
    public bool IsFinished => !_thread.IsAlive;

    /// <summary>Joins within <paramref name="bound"/> (default <see cref="TestThreads.Bound"/>), failing the test on a
    /// hang, and rethrows the thread's exception.</summary>
    public void Join(TimeSpan? bound = null)
    {
        TimeSpan limit = bound ?? TestThreads.Bound;
        Assert.True(_thread.Join(limit), $"Thread '{Name}' did not finish within {limit.TotalMilliseconds} ms.");
        if (_failure != null)
        {
            ExceptionDispatchInfo.Capture(_failure).Throw();
        }
    }
}

/// <summary>
/// A helper thread parked in a known state (after garnet's <c>ParkedReaderThread</c>): it runs <c>enter</c>, signals,
/// waits until the test releases it, runs <c>leave</c>, and ends. The test, not the scheduler, decides when it leaves.
/// </summary>
internal sealed class ParkedThread
{
    private readonly ManualResetEventSlim _entered = new();
    private readonly ManualResetEventSlim _release = new();
    private readonly TestThread _thread;
    private bool _enterCompleted;

    /// <summary>Starts the thread and returns once <paramref name="enter"/> has completed on it.</summary>
    public ParkedThread(string name, Action enter, Action leave)
    {
        _thread = new TestThread(name, () =>
        {
            try
            {
                enter();
                _enterCompleted = true;
            }
            finally
            {
                _entered.Set(); // Publishes _enterCompleted (the event's set/wait pair is a full barrier).
            }

            _release.Wait();
            leave();
        });

        Assert.True(_entered.Wait(TestThreads.Bound), $"Parked thread '{name}' did not enter within the bound.");
        if (!_enterCompleted)
        {
            _thread.Join(); // enter threw: surface its exception now.
        }
    }

    /// <summary>Lets the thread run <c>leave</c>, without waiting for it.</summary>
    public void Release() => _release.Set();

    /// <summary>Releases the thread and joins it (bounded), rethrowing its exception.</summary>
    public void ReleaseAndJoin()
    {
        _release.Set();
        _thread.Join();
    }
}

/// <summary>An <see cref="ISpinWaiter"/> that counts its calls, as the machine model's CPU will serve interrupts there.</summary>
internal sealed class CountingSpinWaiter : ISpinWaiter
{
    private long _relaxes;
    private long _blocks;
    private long _wakes;

    /// <summary>Runs on every <see cref="Relax"/> (a test stands in an interrupt handler here).</summary>
    public Action? OnRelax { get; init; }

    /// <summary>Set the first time the waiter is about to sleep.</summary>
    public ManualResetEventSlim Blocked { get; } = new();

    /// <summary>Spin iterations so far.</summary>
    public long Relaxes => Volatile.Read(ref _relaxes);

    /// <summary>Times the waiter was about to sleep.</summary>
    public long Blocks => Volatile.Read(ref _blocks);

    /// <summary>Times the waiter woke up.</summary>
    public long Wakes => Volatile.Read(ref _wakes);

    public void Relax()
    {
        Interlocked.Increment(ref _relaxes);
        OnRelax?.Invoke();
    }

    public void PrepareToBlock()
    {
        Interlocked.Increment(ref _blocks);
        Blocked.Set();
    }

    public void FinishBlock() => Interlocked.Increment(ref _wakes);
}
