// Starts DynamoDB Local (AWS's own emulator) in memory on 127.0.0.1 only.
// DynamoDB Local's command line has no option for the address it binds, and
// binds every interface; our tests may listen on loopback only, so this sets
// the host (and a free port) on its Jetty connector before starting it.
// Usage: LoopbackDynamoDbLocal <port file> <log file>. Once it accepts
// requests it writes its port to the port file. It exits when its standard
// input closes, so it never outlives the process that started it.
import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public final class LoopbackDynamoDbLocal {
  public static void main(String[] args) throws Exception {
    Path portFile = Path.of(args[0]);
    PrintStream log = new PrintStream(new FileOutputStream(args[1]), true);
    System.setOut(log);
    System.setErr(log);
    DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(
        new String[] {"-inMemory", "-sharedDb", "-port", "8000", "-disableTelemetry"});
    Field field = DynamoDBProxyServer.class.getDeclaredField("server");
    field.setAccessible(true);
    Server jetty = (Server) field.get(proxy);
    for (Connector connector : jetty.getConnectors()) {
      ((ServerConnector) connector).setHost("127.0.0.1");
      // Its command line refuses port 0, so a free port is chosen here.
      ((ServerConnector) connector).setPort(0);
    }
    proxy.start();
    int port = ((ServerConnector) jetty.getConnectors()[0]).getLocalPort();
    // Written whole, then renamed, so a reader never sees half a number.
    Path partial = Path.of(args[0] + ".partial");
    Files.writeString(partial, Integer.toString(port));
    Files.move(partial, portFile, StandardCopyOption.ATOMIC_MOVE);
    while (System.in.read() != -1) {
      // Wait for the parent to close our standard input.
    }
    proxy.stop();
    System.exit(0);
  }
}
