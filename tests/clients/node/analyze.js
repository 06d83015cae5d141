// Perspective's own Node sample, with only the discovery URL and key changed:
// node analyze.js DISCOVERY_URL API_KEY 'comment text'  -> prints the response (or the error) as JSON.
const {google} = require('googleapis');

const [discoveryUrl, apiKey, text] = process.argv.slice(2);
google.discoverAPI(discoveryUrl).then((client) => {
  const analyzeRequest = {
    comment: {text},
    requestedAttributes: {TOXICITY: {}, INSULT: {}},
    spanAnnotations: true,
  };
  client.comments.analyze({key: apiKey, resource: analyzeRequest}, (err, response) => {
    if (err) {
      console.log(JSON.stringify({error: {code: err.code, message: err.message}}));
      return;
    }
    console.log(JSON.stringify(response.data));
  });
}).catch((err) => {
  console.log(JSON.stringify({error: {code: 'discovery', message: err.message}}));
});
