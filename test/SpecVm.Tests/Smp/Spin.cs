using System.Diagnostics;
using SpecVm.Smp;

namespace SpecVm.Tests.Smp;

/// <summary>Bounded waits for stress tests: a wait that runs out fails the test instead of hanging it.</summary>
internal static class Spin
{
    /// <summary>How long any one hand-off between two CPUs may take before the test calls it a hang.</summary>
    public static readonly TimeSpan HandOff = TimeSpan.FromSeconds(5);

    /// <summary>Spins on <paramref name="cpu"/> (serving IPIs) until <paramref name="done"/> or the hand-off limit.</summary>
    public static void Until(Cpu cpu, Func<bool> done, string what)
    {
        long start = Stopwatch.GetTimestamp();
        while (!done())
        {
            cpu.Poll();
            Thread.SpinWait(8);
            if (Stopwatch.GetElapsedTime(start) > HandOff)
            {
                throw new TimeoutException($"CPU {cpu.Id} waited more than {HandOff.TotalSeconds} s for {what}.");
            }
        }
    }

    /// <summary>Spins without serving IPIs (a CPU busy in code with no interrupt point) until <paramref name="done"/>.</summary>
    public static void UntilNoPoll(Cpu cpu, Func<bool> done, string what)
    {
        long start = Stopwatch.GetTimestamp();
        while (!done())
        {
            Thread.SpinWait(8);
            if (Stopwatch.GetElapsedTime(start) > HandOff)
            {
                throw new TimeoutException($"CPU {cpu.Id} waited more than {HandOff.TotalSeconds} s for {what}.");
            }
        }
    }

    /// <summary>Waits for <paramref name="tasks"/>; a hang fails with the given message (the CPUs are then left running).</summary>
    public static void Join(TimeSpan limit, string what, params Task[] tasks)
    {
        if (!Task.WaitAll(tasks, limit))
        {
            throw new TimeoutException($"{what} did not finish within {limit.TotalSeconds} s: hang.");
        }
    }
}
