/* http: see http.h. One curl easy handle per request. */
#include "http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static size_t h__http_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	buf_append(ud, ptr, size * nmemb);
	return size * nmemb;
}

char *h_http(int port, const char *path, const char *json_body, int timeout_ms, long *status, const char **error)
{
	CURL *e = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	struct buf out;
	char url[512];

	buf_init(&out);
	buf_append(&out, "", 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, h__http_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
	if (json_body) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, json_body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(json_body));
	}
	*status = 0;
	CURLcode rc = curl_easy_perform(e);
	if (rc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	if (error)
		*error = rc == CURLE_OK ? NULL : curl_easy_strerror(rc);
	curl_easy_cleanup(e);
	curl_slist_free_all(hdrs);
	return out.data;
}

char *h_http_get(int port, const char *path, long *status)
{
	return h_http(port, path, NULL, 5000, status, NULL);
}
