// The test broker's OAUTHX listener (scripts/kafka-oauth): Kafka's JWT validator, plus a check of
// the SASL extensions the client sent (Kafka's own handler accepts any extensions and checks
// none). `logicalCluster` must be `lkc-wsproxy` and `identityPoolId` must be `pool-wsproxy`: a
// missing or different one fails the authentication, which proves what reached the broker.
package wsproxy.test;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.UnsupportedCallbackException;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerExtensionsValidatorCallback;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler;

public class ExtensionCheckingValidatorCallbackHandler extends OAuthBearerValidatorCallbackHandler {
    private static final Map<String, String> EXPECTED =
        Map.of("logicalCluster", "lkc-wsproxy", "identityPoolId", "pool-wsproxy");

    @Override
    public void handle(Callback[] callbacks) throws IOException, UnsupportedCallbackException {
        List<Callback> rest = new ArrayList<>();
        for (Callback callback : callbacks) {
            if (callback instanceof OAuthBearerExtensionsValidatorCallback) {
                OAuthBearerExtensionsValidatorCallback e = (OAuthBearerExtensionsValidatorCallback) callback;
                Map<String, String> got = e.inputExtensions().map();
                for (Map.Entry<String, String> want : EXPECTED.entrySet()) {
                    if (want.getValue().equals(got.get(want.getKey()))) {
                        e.valid(want.getKey());
                    } else {
                        e.error(want.getKey(), "expected " + want.getValue() + ", got " + got.get(want.getKey()));
                    }
                }
            } else {
                rest.add(callback);
            }
        }
        if (!rest.isEmpty()) {
            super.handle(rest.toArray(new Callback[0]));
        }
    }
}
