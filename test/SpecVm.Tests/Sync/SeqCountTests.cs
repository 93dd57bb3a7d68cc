using System.Diagnostics;
using SpecVm.Sync;
using Xunit.Abstractions;

namespace SpecVm.Tests.Sync;

[Collection(StressCollection.Name)]
public sealed class SeqCountTests(ITestOutputHelper output)
{
    private const int Seed = 0x5E0C;

    /// <summary>Which correct reader a torn-value test runs.</summary>
    public enum CorrectReader
    {
        /// <summary><see cref="SeqCount.TryReadBegin"/> then <see cref="SeqCount.ReadRetry"/>; odd counts are refused.</summary>
        TryReadBegin,

        /// <summary><see cref="SeqCount.ReadBegin"/> (spins past odd counts) then <see cref="SeqCount.ReadRetry"/>.</summary>
        ReadBegin,
    }

    /// <summary>How fast the writer and readers of a torn-value test go.</summary>
    public enum Pace
    {
        /// <summary>No pauses anywhere: the most write sections per second, the hardest on the fences.</summary>
        Fast,

        /// <summary>Pauses between word stores and word loads: a torn value is there to be seen in most sections.</summary>
        Slow,
    }

    [Theory]
    [InlineData(CorrectReader.TryReadBegin, Pace.Fast)]
    [InlineData(CorrectReader.TryReadBegin, Pace.Slow)]
    [InlineData(CorrectReader.ReadBegin, Pace.Fast)]
    [InlineData(CorrectReader.ReadBegin, Pace.Slow)]
    public void ReaderNeverAcceptsATornValueUnderAConcurrentWriter(CorrectReader kind, Pace pace)
    {
        WordReader reader = kind == CorrectReader.TryReadBegin ? ReadWithTryReadBegin : ReadWithReadBegin;
        TornCheckResult result = TornValueChecker.Run(reader, pace, TimeSpan.FromMilliseconds(300), Seed);
        output.WriteLine($"seed 0x{Seed:X}: {result}");

        Assert.True(result.FirstTear == null, $"Torn value accepted: {result.FirstTear} ({result})");
        // The check is only worth something if the reader accepted values while the writer was busy.
        Assert.True(result.Accepted >= 100, $"Too few accepted reads to mean anything: {result}");
        Assert.True(result.WriterSections >= 100, $"The writer barely ran: {result}");
    }

    [Fact]
    public void TornValueCheckerCatchesAReaderThatSkipsTheRecheck()
    {
        // Planted bug: the same checker, the same writer, a reader that never calls ReadRetry. The slow pace makes
        // the writer spend most of each section between word stores, and the reader pause between word loads, so a
        // torn value appears whenever a read straddles a store, or the reader is preempted mid-read (one core).
        TornCheckResult result = TornValueChecker.Run(ReadWithoutRecheck, Pace.Slow, TestThreads.Bound, Seed);
        output.WriteLine($"seed 0x{Seed:X}: {result}");

        Assert.True(result.FirstTear != null, $"The checker missed the planted bug (reader without ReadRetry): {result}");
    }

    [Fact]
    public void TryReadBeginFailsWhileAParkedWriterIsInside()
    {
        var data = new GuardedWords();
        var writer = new ParkedThread(
            "parked seqcount writer",
            enter: () =>
            {
                data.Seq.WriteBegin();
                Volatile.Write(ref data.Words[0], 1); // Half-written: word 0 is new, words 1..3 are old.
            },
            leave: () =>
            {
                for (int k = 1; k < GuardedWords.Count; k++)
                {
                    Volatile.Write(ref data.Words[k], 1);
                }

                data.Seq.WriteEnd();
            });

        for (int i = 0; i < 1000; i++)
        {
            Assert.False(data.Seq.TryReadBegin(out int start), $"TryReadBegin let a reader in while a writer was inside (count {start}).");
            Assert.Equal(1, start & 1);
        }

        // ReadBegin must spin, not proceed: the waiter releases the writer only after 1000 spin iterations, and
        // ReadBegin may only return after the writer closed its section.
        int seen = 0;
        var waiter = new CountingSpinWaiter
        {
            OnRelax = () =>
            {
                if (++seen == 1000)
                {
                    writer.Release();
                }
            },
        };

        int begin = data.Seq.ReadBegin(waiter);
        Assert.Equal(2, begin);
        Assert.True(waiter.Relaxes >= 1000, $"ReadBegin returned after only {waiter.Relaxes} spins, while the writer was parked inside.");
        Span<long> words = stackalloc long[GuardedWords.Count];
        data.ReadWords(words);
        Assert.False(data.Seq.ReadRetry(begin));
        Assert.Equal([1L, 1L, 1L, 1L], words.ToArray());
        writer.ReleaseAndJoin();
    }

    [Fact]
    public void WriteEndWithoutWriteBeginThrowsAndLeavesTheCountUsable()
    {
        var data = new GuardedWords();
        Assert.Throws<SynchronizationLockException>(() => data.Seq.WriteEnd());
        Assert.Equal(0, data.Seq.Current);

        Assert.True(data.Seq.TryReadBegin(out int start));
        data.Seq.WriteBegin();
        Assert.False(data.Seq.TryReadBegin(out _));
        data.Seq.WriteEnd();
        Assert.Equal(2, data.Seq.Current);
        Assert.True(data.Seq.ReadRetry(start), "A reader that began before the write must be told to retry.");
        Assert.True(data.Seq.TryReadBegin(out int again));
        Assert.False(data.Seq.ReadRetry(again));
    }

    [Fact]
    public void NestedWriteBeginThrowsAndLeavesTheOpenSectionOpen()
    {
        var data = new GuardedWords();
        data.Seq.WriteBegin();
        Assert.Throws<SynchronizationLockException>(() => data.Seq.WriteBegin());
        Assert.Equal(1, data.Seq.Current);
        data.Seq.WriteEnd();
        Assert.Equal(2, data.Seq.Current);
    }

    private static bool ReadWithTryReadBegin(GuardedWords data, Span<long> words)
    {
        if (!data.Seq.TryReadBegin(out int start))
        {
            return false;
        }

        data.ReadWords(words);
        return !data.Seq.ReadRetry(start);
    }

    private static bool ReadWithReadBegin(GuardedWords data, Span<long> words)
    {
        int start = data.Seq.ReadBegin();
        data.ReadWords(words);
        return !data.Seq.ReadRetry(start);
    }

    private static bool ReadWithoutRecheck(GuardedWords data, Span<long> words)
    {
        if (!data.Seq.TryReadBegin(out _))
        {
            return false;
        }

        data.ReadWords(words);
        return true; // Planted bug: accepts without ReadRetry, so a writer that began meanwhile goes unnoticed.
    }
}

/// <summary>A reader under test: reads the four words into <c>words</c> and says whether it accepts them.</summary>
internal delegate bool WordReader(GuardedWords data, Span<long> words);

/// <summary>Four words that a writer always sets to one common value inside one write section.</summary>
internal sealed class GuardedWords
{
    public const int Count = 4;

    /// <summary>The sequence count guarding <see cref="Words"/>.</summary>
    public SeqCount Seq;

    /// <summary>The guarded words.</summary>
    public readonly long[] Words = new long[Count];

    /// <summary>Pauses between the loads of two words (set by the checker, the same for every reader).</summary>
    public int ReadPause;

    /// <summary>Loads the words, pausing <see cref="ReadPause"/> between loads.</summary>
    public void ReadWords(Span<long> words)
    {
        for (int k = 0; k < Count; k++)
        {
            TestThreads.Spin(ReadPause);
            words[k] = Volatile.Read(ref Words[k]);
        }
    }
}

/// <summary>What one run of <see cref="TornValueChecker"/> saw.</summary>
internal sealed record TornCheckResult(long Attempts, long Accepted, long WriterSections, string? FirstTear, TimeSpan Elapsed)
{
    public override string ToString() =>
        $"{Attempts} attempts, {Accepted} accepted, {WriterSections} write sections, {Elapsed.TotalMilliseconds:F0} ms" +
        (FirstTear == null ? ", no torn value" : $", first torn value: {FirstTear}");
}

/// <summary>
/// The torn-value checker: a writer thread keeps setting all four words to a new common value inside
/// WriteBegin/WriteEnd, while the calling thread runs the reader under test; any accepted read whose words differ is a
/// torn value. Every reader, correct or planted, goes through this one function.
/// </summary>
internal static class TornValueChecker
{
    /// <summary>Runs until <paramref name="duration"/> passes or the first torn value is accepted.</summary>
    public static TornCheckResult Run(WordReader reader, SeqCountTests.Pace pace, TimeSpan duration, int seed)
    {
        bool slow = pace == SeqCountTests.Pace.Slow;
        int wordPause = slow ? 20 : 0;
        int idlePauseMax = slow ? 200 : 4;
        var data = new GuardedWords { ReadPause = slow ? 10 : 0 };
        int stop = 0;
        long sections = 0;

        var writer = new TestThread("seqcount writer", () =>
        {
            var rng = new Random(seed);
            long value = 0;
            while (Volatile.Read(ref stop) == 0)
            {
                value++;
                data.Seq.WriteBegin();
                for (int k = 0; k < GuardedWords.Count; k++)
                {
                    Volatile.Write(ref data.Words[k], value);
                    TestThreads.Spin(wordPause);
                }

                data.Seq.WriteEnd();
                Volatile.Write(ref sections, value);
                TestThreads.Spin(rng.Next(idlePauseMax + 1));
            }
        });

        long attempts = 0;
        long accepted = 0;
        string? tear = null;
        Span<long> words = stackalloc long[GuardedWords.Count];
        var sw = Stopwatch.StartNew();
        try
        {
            while (sw.Elapsed < duration)
            {
                attempts++;
                if (!reader(data, words))
                {
                    continue;
                }

                accepted++;
                if (words[1] != words[0] || words[2] != words[0] || words[3] != words[0])
                {
                    tear = $"[{words[0]}, {words[1]}, {words[2]}, {words[3]}] after {sw.Elapsed.TotalMilliseconds:F1} ms";
                    break;
                }
            }
        }
        finally
        {
            Volatile.Write(ref stop, 1);
            writer.Join();
        }

        return new TornCheckResult(attempts, accepted, Volatile.Read(ref sections), tear, sw.Elapsed);
    }
}
