namespace SpecVm.Benchmarks.Cli;

/// <summary>Process exit codes.</summary>
internal static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;

    /// <summary>The run or the comparison failed (I/O, a workload error).</summary>
    public const int Failed = 1;

    /// <summary>Bad command-line input (one line on stderr naming the option).</summary>
    public const int BadInput = 2;

    /// <summary><c>compare --fail-on-regression</c>: some point's whole confidence interval lies below the threshold.</summary>
    public const int Regression = 3;

    /// <summary>Interrupted by Ctrl-C (128 + SIGINT); what was measured has been written, marked partial.</summary>
    public const int Interrupted = 130;
}

/// <summary>Bad command-line input, reported as one line on stderr.</summary>
/// <param name="message">What was wrong.</param>
internal sealed class UsageException(string message) : Exception(message);
