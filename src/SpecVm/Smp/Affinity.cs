using System.Runtime.InteropServices;

namespace SpecVm.Smp;

/// <summary>What <see cref="Affinity.TryPinCurrentThread"/> achieved.</summary>
public enum PinResult
{
    /// <summary>The thread now runs only on the requested core.</summary>
    Pinned,

    /// <summary>This OS offers no thread affinity SpecVm can use; the thread runs wherever the OS puts it.</summary>
    NotSupported,

    /// <summary>The OS refused (for example, the core is outside this process's allowed set); the thread is not pinned.</summary>
    Refused,
}

/// <summary>Thread-to-core pinning (Linux <c>sched_setaffinity</c>/<c>sched_getcpu</c>) and the set of usable cores.</summary>
/// <remarks>
/// On Linux, pinning uses <c>sched_setaffinity(0, …)</c>, which applies to the calling thread. Elsewhere pinning
/// returns <see cref="PinResult.NotSupported"/> and writes one line to <see cref="Console.Error"/> the first time,
/// never an exception, so a model still runs (unpinned) on any OS.
/// </remarks>
public static unsafe partial class Affinity
{
    private const int MaskWords = 16; // 1024 CPUs, glibc's CPU_SETSIZE.
    private static int s_warned;
    private static int[]? s_allowed;

    /// <summary>True when this OS supports pinning through this class.</summary>
    public static bool IsSupported => OperatingSystem.IsLinux();

    /// <summary>The cores this process may run on, in ascending order (read once, before any pinning).</summary>
    public static IReadOnlyList<int> AllowedCores => s_allowed ??= ReadAllowedCores();

    /// <summary>Pins the calling thread to <paramref name="core"/>.</summary>
    /// <param name="core">An OS core id (0..1023).</param>
    public static PinResult TryPinCurrentThread(int core)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(core);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(core, MaskWords * 64);
        if (!IsSupported)
        {
            // Exchange: exactly one caller prints the warning, whatever the number of CPU threads pinning at once.
            if (Interlocked.Exchange(ref s_warned, 1) == 0)
            {
                Console.Error.WriteLine($"SpecVm: thread pinning is not supported on {RuntimeInformation.OSDescription}; CPU threads run unpinned.");
            }

            return PinResult.NotSupported;
        }

        // AllowedCores reads the calling thread's own mask the first time it is asked; take that snapshot now, while
        // this thread still has the process's full set, or a pinned thread asking first would make it one core.
        _ = AllowedCores;

        ulong* mask = stackalloc ulong[MaskWords];
        new Span<ulong>(mask, MaskWords).Clear();
        mask[core / 64] = 1UL << (core % 64);
        return SchedSetAffinity(0, (nuint)(MaskWords * sizeof(ulong)), mask) == 0 ? PinResult.Pinned : PinResult.Refused;
    }

    /// <summary>The core the calling thread runs on right now, or -1 where the OS cannot say.</summary>
    public static int CurrentCore
    {
        get
        {
            if (!IsSupported)
            {
                return -1;
            }

            int core = SchedGetCpu();
            return core < 0 ? -1 : core;
        }
    }

    /// <summary>The cores the calling thread may run on now (its own affinity mask).</summary>
    public static IReadOnlyList<int> CurrentThreadCores() => IsSupported ? ReadMask() ?? Fallback() : Fallback();

    private static int[] ReadAllowedCores() => IsSupported ? ReadMask() ?? Fallback() : Fallback();

    private static int[] Fallback() => Enumerable.Range(0, Environment.ProcessorCount).ToArray();

    private static int[]? ReadMask()
    {
        ulong* mask = stackalloc ulong[MaskWords];
        new Span<ulong>(mask, MaskWords).Clear();
        if (SchedGetAffinity(0, (nuint)(MaskWords * sizeof(ulong)), mask) != 0)
        {
            return null;
        }

        var cores = new List<int>();
        for (int i = 0; i < MaskWords * 64; i++)
        {
            if ((mask[i / 64] & (1UL << (i % 64))) != 0)
            {
                cores.Add(i);
            }
        }

        return cores.Count == 0 ? null : cores.ToArray();
    }

    [LibraryImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static partial int SchedSetAffinity(int pid, nuint size, ulong* mask);

    [LibraryImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int SchedGetAffinity(int pid, nuint size, ulong* mask);

    [LibraryImport("libc", EntryPoint = "sched_getcpu")]
    private static partial int SchedGetCpu();
}
