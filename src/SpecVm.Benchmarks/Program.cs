namespace SpecVm.Benchmarks;

internal static class Program
{
    private static int Main(string[] args)
    {
        Console.WriteLine($"SpecVm {typeof(SpecVm.Sync.CacheLine).Assembly.GetName().Version}");
        return 0;
    }
}
