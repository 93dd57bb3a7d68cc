using System.Diagnostics;
using System.Runtime.InteropServices;
using SpecVm.Faults;
using SpecVm.Memory;
using SpecVm.Smp;
using SpecVm.Sync;
using SpecVm.Workloads;

namespace SpecVm.Scaling;

/// <summary>
/// The physical floor of a page fault (issue #14): N pinned threads each zeroing (or copying) 4 KiB pages in a buffer of
/// their own, with the kernels the model's faults use (<see cref="PageKernels"/>), as fast as the machine allows. No
/// fault handler can beat it: it is the fault's memory traffic with every lock, table walk and TLB flush taken away.
/// </summary>
/// <remarks>
/// The threads are a <see cref="Machine"/>'s CPU threads, so they are pinned exactly as a measured point's are
/// (CPU i on allowed core i mod cores, <see cref="Affinity"/>); the machine's model is otherwise unused. Each thread
/// allocates and first-touches its buffer on its own core, then loops over it in batches of
/// <see cref="BatchPages"/> pages, as the fault workloads loop over their mapping, publishing a running total that the
/// harness thread reads at the window's two edges (the same warm-up and window as the points).
/// </remarks>
internal static unsafe class PhysicalFloor
{
    /// <summary>Pages per batch between publications of the running total: the fault workloads' batch (1 MiB).</summary>
    public const int BatchPages = PageFaultWorkload.BatchPages;

    private const int Page = PhysicalMemory.PageSize;

    /// <summary>Measures once: total pages zeroed (copied) per second by <paramref name="threads"/> pinned threads.</summary>
    /// <param name="spec">What each thread does and on how much memory.</param>
    /// <param name="threads">Threads, one per CPU of a fresh machine.</param>
    /// <param name="warmup">Time before the window.</param>
    /// <param name="duration">The window.</param>
    public static double Measure(FloorSpec spec, int threads, TimeSpan warmup, TimeSpan duration)
    {
        var options = new MachineOptions { CpuCount = threads, MemoryBytes = 16L << 20, AllowOversubscription = true, Pin = true };
        using var machine = new Machine(options);
        var ops = new PaddedLong[threads];
        var stop = new PaddedInt[1];
        var tasks = new Task[threads];
        try
        {
            for (int i = 0; i < threads; i++)
            {
                int id = i;
                tasks[i] = machine.RunAsync(id, _ => Loop(spec, ref ops[id].Value, ref stop[0].Value));
            }

            Task all = Task.WhenAll(tasks);
            if (all.Wait(warmup))
            {
                all.GetAwaiter().GetResult(); // Throws the loop's failure; a loop that ends by itself is a bug.
                throw new InvalidOperationException("A physical-floor thread ended before the measurement was over.");
            }

            long before = Sum(ops);
            long t0 = Stopwatch.GetTimestamp();
            _ = all.Wait(duration);
            long t1 = Stopwatch.GetTimestamp();
            long after = Sum(ops);
            Volatile.Write(ref stop[0].Value, 1); // Release: every loop reads Stop volatile and ends after its batch.
            all.GetAwaiter().GetResult();
            return (after - before) / ((t1 - t0) / (double)Stopwatch.Frequency);
        }
        finally
        {
            Volatile.Write(ref stop[0].Value, 1); // On every exit path, failures included: no loop outlives the machine.
            try
            {
                Task.WaitAll(tasks.Where(t => t != null).ToArray(), TimeSpan.FromSeconds(30));
            }
            catch (AggregateException)
            {
                // Already thrown to the caller on the measured path.
            }
        }
    }

    private static long Sum(PaddedLong[] ops)
    {
        long sum = 0;
        for (int i = 0; i < ops.Length; i++)
        {
            // Volatile read: pairs with the loop's volatile write of its running total (a plain read could be hoisted or torn by reordering with the clock read).
            sum += Volatile.Read(ref ops[i].Value);
        }

        return sum;
    }

    /// <summary>One thread's floor loop, on its pinned CPU thread; allocates only its buffer, before the loop.</summary>
    private static void Loop(FloorSpec spec, ref long ops, ref int stop)
    {
        long pages = spec.BytesPerThread / Page / (spec.Kind == FloorKind.Copy ? 2 : 1);
        if (pages < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(spec), spec.BytesPerThread, "A floor needs at least one page per thread (two to copy).");
        }

        nuint bytes = (nuint)(pages * Page * (spec.Kind == FloorKind.Copy ? 2 : 1));
        byte* buffer = (byte*)NativeMemory.AlignedAlloc(bytes, Page);
        try
        {
            // First touch here, on this thread's core, so that the host's page faults are neither measured nor placed
            // on another node; the copy's source holds non-zero data, as a page-cache page would.
            byte* source = buffer;
            byte* target = spec.Kind == FloorKind.Copy ? buffer + (pages * Page) : buffer;
            for (long p = 0; p < pages; p++)
            {
                PageKernels.Clear(target + (p * Page));
                if (spec.Kind == FloorKind.Copy)
                {
                    NativeMemory.Fill(source + (p * Page), Page, 0x5A);
                }
            }

            long next = 0;
            long total = 0;

            // Volatile read of Stop: the harness's store must end the loop promptly; a plain read could be hoisted.
            while (Volatile.Read(ref stop) == 0)
            {
                long end = Math.Min(pages, next + BatchPages);
                long n = end - next;
                if (spec.Kind == FloorKind.Zero)
                {
                    for (; next < end; next++)
                    {
                        PageKernels.Clear(target + (next * Page));
                    }
                }
                else
                {
                    for (; next < end; next++)
                    {
                        PageKernels.Copy(source + (next * Page), target + (next * Page));
                    }
                }

                if (next == pages)
                {
                    next = 0; // The next round, as a fault workload maps its mapping again.
                }

                total += n;

                // Volatile write: publishes the running total to the harness thread, which reads it at the window edges.
                Volatile.Write(ref ops, total);
            }
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }
}
