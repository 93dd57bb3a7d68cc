using System.Reflection;
using SpecVm.Smp;
using SpecVm.Tests.Sync;
using Xunit.Abstractions;

namespace SpecVm.Tests.Smp;

// xunit 2.9 has no dynamic skip: where pinning is not supported, the pinning tests check the documented fallback
// (NotSupported, CurrentCore -1) instead, and say so in their output.
public sealed class AffinityTests(ITestOutputHelper output)
{
    private const int Samples = 20_000;

    [Fact]
    public void APinnedThreadObservesOnlyItsCore()
    {
        if (!Affinity.IsSupported)
        {
            output.WriteLine($"Not run: thread pinning is not supported on {System.Runtime.InteropServices.RuntimeInformation.OSDescription}.");
            return;
        }

        IReadOnlyList<int> allowed = Affinity.AllowedCores;
        output.WriteLine($"allowed cores: [{string.Join(", ", allowed)}]");
        foreach (int core in allowed)
        {
            PinResult result = default;
            int[] threadCores = [];
            var seen = new Dictionary<int, int>();
            // A fresh thread per core: pinning a pool or test-runner thread would leak into other tests.
            new TestThread($"pinned to core {core}", () =>
            {
                result = Affinity.TryPinCurrentThread(core);
                threadCores = [.. Affinity.CurrentThreadCores()];
                for (int i = 0; i < Samples; i++)
                {
                    int now = Affinity.CurrentCore;
                    seen[now] = seen.GetValueOrDefault(now) + 1;
                    if (i % 256 == 0)
                    {
                        Thread.Yield(); // Give the scheduler every chance to move us; it must not.
                    }
                }
            }).Join();

            output.WriteLine($"core {core}: {result}, mask [{string.Join(", ", threadCores)}], observed {string.Join(", ", seen.Select(kv => $"{kv.Key}x{kv.Value}"))}");
            Assert.Equal(PinResult.Pinned, result);
            Assert.Equal([core], threadCores);
            Assert.Equal([core], seen.Keys.ToArray());
        }
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    [InlineData(1024)]
    public void PinningRejectsACoreOutsideTheMaskRange(int core) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Affinity.TryPinCurrentThread(core));

    [Fact]
    public void PinningToACoreTheProcessMayNotUseIsRefusedAndLeavesTheThreadUnpinned()
    {
        if (!Affinity.IsSupported)
        {
            Assert.Equal(PinResult.NotSupported, Affinity.TryPinCurrentThread(0));
            Assert.Equal(-1, Affinity.CurrentCore);
            output.WriteLine("Pinning not supported here: checked the NotSupported fallback instead.");
            return;
        }

        int outside = Enumerable.Range(0, 1024).Last(c => !Affinity.AllowedCores.Contains(c));
        PinResult result = default;
        int[] before = [];
        int[] after = [];
        new TestThread("refused pin", () =>
        {
            before = [.. Affinity.CurrentThreadCores()];
            result = Affinity.TryPinCurrentThread(outside);
            after = [.. Affinity.CurrentThreadCores()];
        }).Join();

        output.WriteLine($"core {outside}: {result}");
        Assert.Equal(PinResult.Refused, result);
        Assert.Equal(before, after);
    }

    [Fact]
    public void AllowedCoresIsTheProcessSetEvenWhenFirstReadOnAPinnedThread()
    {
        // Regression: AllowedCores was read lazily from the calling thread's own mask, so a pinned CPU thread that
        // happened to read it first made every later caller see just that one core.
        if (!Affinity.IsSupported)
        {
            output.WriteLine("Not run: thread pinning is not supported here.");
            return;
        }

        FieldInfo cache = typeof(Affinity).GetField("s_allowed", BindingFlags.NonPublic | BindingFlags.Static)!;
        int[] processSet = [.. Affinity.CurrentThreadCores()]; // This test thread is not pinned.
        if (processSet.Length < 2)
        {
            output.WriteLine("Not run: the process may use only one core, so a pinned thread's mask equals the process's.");
            return;
        }

        object? saved = cache.GetValue(null);
        try
        {
            cache.SetValue(null, null);
            int[] seenByPinned = [];
            new TestThread("pinned first reader", () =>
            {
                Assert.Equal(PinResult.Pinned, Affinity.TryPinCurrentThread(processSet[^1]));
                seenByPinned = [.. Affinity.AllowedCores];
            }).Join();

            Assert.Equal(processSet, seenByPinned);
            Assert.Equal(processSet, Affinity.AllowedCores);
        }
        finally
        {
            cache.SetValue(null, saved);
        }
    }
}
